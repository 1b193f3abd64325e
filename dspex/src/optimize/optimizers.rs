//! The optimisers: builders over the pinned DSPy's own implementations.

use std::sync::Arc;

use snakepit_grpc_bridge::{Map, Value};

use super::run::{CompileProgress, OnProgress, Plan, Run, compile};
use crate::Lm;
use crate::error::Result;
use crate::example::Example;
use crate::metric::Metric;
use crate::program::Module;

/// An LM as a value the worker builds (`{"$lm": LmConfig}`).
fn lm_value(lm: &Lm) -> Value {
    let mut map = Map::new();
    map.insert("$lm".into(), Value::bytes(lm.to_config_bytes()));
    Value::Map(map)
}

fn teacher_settings(lm: &Lm) -> Value {
    let mut map = Map::new();
    map.insert("lm".into(), lm_value(lm));
    Value::Map(map)
}

fn int(n: u32) -> Value {
    Value::Int(n.into())
}

/// What every optimiser builder holds.
struct Inner<M> {
    optimizer: &'static str,
    metric: Option<Arc<M>>,
    init: Map,
    compile: Map,
    progress: Option<OnProgress>,
}

impl<M> Inner<M> {
    fn new(optimizer: &'static str, metric: Option<M>) -> Self {
        Inner {
            optimizer,
            metric: metric.map(Arc::new),
            init: Map::new(),
            compile: Map::new(),
            progress: None,
        }
    }

    async fn run<P>(
        &self,
        program: &P,
        trainset: &[Example<P::Input, P::Output>],
        valset: Option<&[Example<P::Input, P::Output>]>,
    ) -> Result<P>
    where
        P: Module,
        M: Metric<P::Input, P::Output>,
    {
        let metric = self
            .metric
            .clone()
            .map(|m| m as Arc<dyn Metric<P::Input, P::Output>>);
        compile(
            program,
            Plan {
                optimizer: self.optimizer,
                init: self.init.clone(),
                compile: self.compile.clone(),
            },
            Run {
                trainset,
                valset,
                metric,
                progress: self.progress.clone(),
            },
        )
        .await
    }
}

/// The DSPy keyword of a parameter: its name, or the one given with `as`.
macro_rules! key {
    ($param:ident) => {
        stringify!($param)
    };
    ($param:ident, $key:literal) => {
        $key
    };
}

macro_rules! optimizer {
    (
        $(#[$doc:meta])*
        $name:ident;
        $( $(#[$pdoc:meta])* $place:ident $param:ident $(as $key:literal)? : $ty:ty => $convert:expr ),* $(,)?
    ) => {
        $(#[$doc])*
        pub struct $name<M>(Inner<M>);

        impl<M> std::fmt::Debug for $name<M> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("init", &self.0.init)
                    .field("compile", &self.0.compile)
                    .finish()
            }
        }

        impl<M> $name<M> {
            $(
                $(#[$pdoc])*
                pub fn $param(mut self, value: $ty) -> Self {
                    let key = key!($param $(, $key)?);
                    self.0.$place.insert(key.into(), ($convert)(value));
                    self
                }
            )*

            /// Calls `report` after each metric call (examples scored, last and best score).
            pub fn on_progress(mut self, report: impl Fn(&CompileProgress) + Send + Sync + 'static) -> Self {
                self.0.progress = Some(Arc::new(report));
                self
            }

            /// Tunes a copy of `program` on `trainset` and returns it; `program` is unchanged.
            /// The compilation is not cut by the pool's request timeout; dropping the future
            /// stops it in the worker.
            pub async fn compile<P>(
                &self,
                program: &P,
                trainset: &[Example<P::Input, P::Output>],
            ) -> Result<P>
            where
                P: Module,
                M: Metric<P::Input, P::Output>,
            {
                self.0.run(program, trainset, None).await
            }
        }
    };
}

macro_rules! with_valset {
    ($name:ident) => {
        impl<M> $name<M> {
            /// [`compile`](Self::compile) with a separate validation set to score candidates on.
            pub async fn compile_with_valset<P>(
                &self,
                program: &P,
                trainset: &[Example<P::Input, P::Output>],
                valset: &[Example<P::Input, P::Output>],
            ) -> Result<P>
            where
                P: Module,
                M: Metric<P::Input, P::Output>,
            {
                self.0.run(program, trainset, Some(valset)).await
            }
        }
    };
}

/// A metric type for optimisers that take none.
#[derive(Debug, Clone, Copy)]
pub enum NoMetric {}

impl<I, O> Metric<I, O> for NoMetric {
    fn score<'a>(&'a self, _: &'a Example<I, O>, _: &'a O) -> crate::metric::ScoreFuture<'a> {
        match *self {}
    }
}

optimizer! {
    /// `dspy.LabeledFewShot`: up to `k` examples of the trainset become each predictor's demos.
    LabeledFewShot;
    /// Demos per predictor. Default 16.
    init k: u32 => int,
    /// Whether to sample the demos at random (else the first `k`). Default true.
    compile sample: bool => Value::Bool,
}

impl LabeledFewShot<NoMetric> {
    /// The optimiser with DSPy's defaults.
    pub fn new() -> Self {
        LabeledFewShot(Inner::new("LabeledFewShot", None))
    }
}

impl Default for LabeledFewShot<NoMetric> {
    fn default() -> Self {
        Self::new()
    }
}

optimizer! {
    /// `dspy.BootstrapFewShot`: runs the program (as its own teacher, or with a teacher LM) on
    /// trainset examples, keeps the traces whose output the metric passes, and makes them the
    /// predictors' demos, beside labeled ones.
    BootstrapFewShot;
    /// Bootstrapped demos per predictor. Default 4.
    init max_bootstrapped_demos: u32 => int,
    /// Labeled (trainset) demos per predictor. Default 16.
    init max_labeled_demos: u32 => int,
    /// Attempts per example. Default 1.
    init max_rounds: u32 => int,
    /// Failed examples tolerated before the compilation fails. Default: DSPy's setting (10).
    init max_errors: u32 => int,
    /// A score at or above which an example passes (else any truthy score passes).
    init metric_threshold: f64 => Value::Float,
    /// The LM the teacher runs with.
    init teacher_lm as "teacher_settings": Lm => |lm: Lm| teacher_settings(&lm),
}

impl<M> BootstrapFewShot<M> {
    /// The optimiser with `metric` and DSPy's defaults.
    pub fn new(metric: M) -> Self {
        BootstrapFewShot(Inner::new("BootstrapFewShot", Some(metric)))
    }
}

optimizer! {
    /// `dspy.BootstrapFewShotWithRandomSearch`: BootstrapFewShot with several candidate
    /// programs (different seeds and demo counts), the best by the metric on the valset kept.
    BootstrapFewShotWithRandomSearch;
    /// Bootstrapped demos per predictor. Default 4.
    init max_bootstrapped_demos: u32 => int,
    /// Labeled demos per predictor. Default 16.
    init max_labeled_demos: u32 => int,
    /// Attempts per example. Default 1.
    init max_rounds: u32 => int,
    /// Candidate programs tried. Default 16.
    init num_candidate_programs: u32 => int,
    /// Threads evaluating candidates. Default: DSPy's.
    init num_threads: u32 => int,
    /// Failed examples tolerated.
    init max_errors: u32 => int,
    /// Stops once a candidate scores this.
    init stop_at_score: f64 => Value::Float,
    /// A score at or above which an example passes.
    init metric_threshold: f64 => Value::Float,
    /// The LM the teacher runs with.
    init teacher_lm as "teacher_settings": Lm => |lm: Lm| teacher_settings(&lm),
}
with_valset!(BootstrapFewShotWithRandomSearch);

impl<M> BootstrapFewShotWithRandomSearch<M> {
    /// The optimiser with `metric` and DSPy's defaults.
    pub fn new(metric: M) -> Self {
        BootstrapFewShotWithRandomSearch(Inner::new(
            "BootstrapFewShotWithRandomSearch",
            Some(metric),
        ))
    }
}

optimizer! {
    /// `dspy.COPRO`: a prompt LM proposes instructions (and output prefixes) for each
    /// predictor, breadth candidates per round, depth rounds, kept by the metric.
    COPRO;
    /// The LM that proposes instructions (default: the pool's).
    init prompt_model: Lm => |lm: Lm| lm_value(&lm),
    /// Candidates per round (more than 1). Default 10.
    init breadth: u32 => int,
    /// Rounds. Default 3.
    init depth: u32 => int,
    /// The proposing temperature. Default 1.4.
    init init_temperature: f64 => Value::Float,
}

impl<M> COPRO<M> {
    /// The optimiser with `metric` and DSPy's defaults.
    pub fn new(metric: M) -> Self {
        let mut inner = Inner::new("COPRO", Some(metric));
        inner.compile.insert("eval_kwargs".into(), {
            let mut eval = Map::new();
            eval.insert("display_progress".into(), Value::Bool(false));
            Value::Map(eval)
        });
        COPRO(inner)
    }
}

/// How much search MIPROv2 or GEPA does when not set by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    /// DSPy's `light`.
    Light,
    /// DSPy's `medium`.
    Medium,
    /// DSPy's `heavy`.
    Heavy,
}

fn auto(auto: Auto) -> Value {
    Value::from(match auto {
        Auto::Light => "light",
        Auto::Medium => "medium",
        Auto::Heavy => "heavy",
    })
}

optimizer! {
    /// `dspy.MIPROv2`: proposes instructions (with a prompt LM) and bootstraps demo sets, then
    /// searches their combinations with Bayesian optimisation (Optuna) on minibatches.
    MIPROv2;
    /// The LM that proposes instructions (default: the pool's).
    init prompt_model: Lm => |lm: Lm| lm_value(&lm),
    /// The LM the program runs with during the search (default: the pool's).
    init task_model: Lm => |lm: Lm| lm_value(&lm),
    /// The LM the teacher runs with when bootstrapping.
    init teacher_lm as "teacher_settings": Lm => |lm: Lm| teacher_settings(&lm),
    /// Bootstrapped demos per predictor. Default 4.
    init max_bootstrapped_demos: u32 => int,
    /// Labeled demos per predictor. Default 4.
    init max_labeled_demos: u32 => int,
    /// A preset budget; set [`num_candidates`](Self::num_candidates) and
    /// [`num_trials`](Self::num_trials) instead for a budget by hand.
    init auto: Auto => auto,
    /// Instruction and demo-set candidates.
    init num_candidates: u32 => int,
    /// Threads. Default: DSPy's.
    init num_threads: u32 => int,
    /// Failed examples tolerated.
    init max_errors: u32 => int,
    /// The random seed. Default 9.
    init seed: u32 => int,
    /// Proposing temperature. Default 1.0.
    init init_temperature: f64 => Value::Float,
    /// Trials of the search (with `num_candidates`, when `auto` is off).
    compile num_trials: u32 => int,
    /// Score trials on minibatches of the valset. Default true.
    compile minibatch: bool => Value::Bool,
    /// Minibatch size. Default 35.
    compile minibatch_size: u32 => int,
    /// Show the program's code to the proposer. Default true.
    compile program_aware_proposer: bool => Value::Bool,
    /// Show a summary of the data to the proposer. Default true.
    compile data_aware_proposer: bool => Value::Bool,
    /// Give the proposer prompting tips. Default true.
    compile tip_aware_proposer: bool => Value::Bool,
    /// Show the proposer demos. Default true.
    compile fewshot_aware_proposer: bool => Value::Bool,
}
with_valset!(MIPROv2);

impl<M> MIPROv2<M> {
    /// The optimiser with `metric` and DSPy's defaults (`auto` light).
    pub fn new(metric: M) -> Self {
        MIPROv2(Inner::new("MIPROv2", Some(metric)))
    }

    /// A budget by hand: no `auto` preset, `num_candidates` candidates, `num_trials` trials.
    pub fn budget(mut self, num_candidates: u32, num_trials: u32) -> Self {
        self.0.init.insert("auto".into(), Value::Null);
        self.0
            .init
            .insert("num_candidates".into(), int(num_candidates));
        self.0.compile.insert("num_trials".into(), int(num_trials));
        self
    }
}

optimizer! {
    /// `dspy.GEPA`: reflective prompt evolution. A reflection LM reads the program's traces
    /// and the metric's scores and proposes better instructions, kept on a Pareto front.
    GEPA;
    /// A preset budget.
    init auto: Auto => auto,
    /// A budget in full evaluations of the valset.
    init max_full_evals: u32 => int,
    /// A budget in metric calls.
    init max_metric_calls: u32 => int,
    /// Examples per reflection. Default 3.
    init reflection_minibatch_size: u32 => int,
    /// Whether to merge candidates. Default true.
    init use_merge: bool => Value::Bool,
    /// Threads. Default: DSPy's.
    init num_threads: u32 => int,
    /// The random seed. Default 0.
    init seed: u32 => int,
}
with_valset!(GEPA);

impl<M> GEPA<M> {
    /// The optimiser with `metric` and the LM that reflects (GEPA needs one).
    pub fn new(metric: M, reflection_lm: Lm) -> Self {
        let mut inner = Inner::new("GEPA", Some(metric));
        inner
            .init
            .insert("reflection_lm".into(), lm_value(&reflection_lm));
        GEPA(inner)
    }
}

optimizer! {
    /// `dspy.SIMBA`: stochastic introspective mini-batch ascent. Finds examples where the
    /// program's outputs vary, and adds demos or self-written rules to the predictors.
    SIMBA;
    /// Minibatch size. Default 32.
    init bsize: u32 => int,
    /// Candidate programs per step. Default 6.
    init num_candidates: u32 => int,
    /// Steps. Default 8.
    init max_steps: u32 => int,
    /// Demos per predictor. Default 4.
    init max_demos: u32 => int,
    /// The LM that writes rules (default: the pool's).
    init prompt_model: Lm => |lm: Lm| lm_value(&lm),
    /// Threads. Default: DSPy's.
    init num_threads: u32 => int,
    /// The random seed. Default 0.
    compile seed: u32 => int,
}

impl<M> SIMBA<M> {
    /// The optimiser with `metric` and DSPy's defaults.
    pub fn new(metric: M) -> Self {
        SIMBA(Inner::new("SIMBA", Some(metric)))
    }
}
