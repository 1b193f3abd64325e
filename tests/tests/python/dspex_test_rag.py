"""The Python twin of the Rust `Rag` program of `programs.rs`, to check that saved programs move
between Rust and Python DSPy in both directions."""

import dspy

from snakepit_bridge.tools import tool


class Rag(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict("question -> query")
        self.answer = dspy.ChainOfThought("question, query -> answer")

    def forward(self, question: str) -> dspy.Prediction:
        query = self.rewrite(question=question).query
        return self.answer(question=question, query=query)


@tool(name="rag_load_and_save")
def rag_load_and_save(load_from: str, save_to: str) -> dict:
    """Loads a saved program into the Python `Rag`, reports what it holds, and saves it again."""
    program = Rag()
    program.load(load_from)
    program.save(save_to)
    return {
        "rewrite_demos": [dict(d) for d in program.rewrite.demos],
        "answer_demos": [dict(d) for d in program.answer.predict.demos],
        "answer_instructions": program.answer.predict.signature.instructions,
    }


@tool(name="rag_save_fresh")
def rag_save_fresh(save_to: str) -> None:
    """Saves a fresh Python `Rag` with one demo per predictor."""
    program = Rag()
    program.rewrite.demos = [dspy.Example(question="<py1>", query="find-py1")]
    program.answer.predict.demos = [
        dspy.Example(question="<py1>", query="find-py1", reasoning="r", answer="from-python")
    ]
    program.answer.predict.signature = program.answer.predict.signature.with_instructions(
        "Answer like Python would."
    )
    program.save(save_to)


@tool(name="react_state")
def react_state(instructions: str) -> dict:
    """DSPy's own ReAct for `question -> answer` with a tool `lookup(term: str)`: its state, to
    compare with the Rust ReAct's."""

    def lookup(term: str) -> str:
        """Looks a term up."""
        return term

    signature = dspy.Signature("question -> answer", instructions)
    agent = dspy.ReAct(signature, tools=[dspy.Tool(lookup, desc="Looks a term up.")], max_iters=3)
    return agent.dump_state()


@tool(name="optimiser_runs")
def optimiser_runs() -> int:
    """How many optimiser runs (`ProgramHost`s) this worker still holds."""
    import gc

    from snakepit_bridge.programs import HOSTS

    gc.collect()
    return len(HOSTS)
