//! Language models for DSPy: DummyLM, LiteLLM models and custom classes, and the adapter that
//! formats prompts (public as `api::dspy::{Lm, LmAdapter}`; kept below `api` because the
//! builder of a [`Bridge`](crate::Bridge) takes one too). The Python side is
//! `python/snakepit_bridge/lm.py`.

use crate::convert::map_to_proto;
use crate::proto as pb;
use crate::value::{Map, Value};

/// How DSPy formats prompts for the LM and parses its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LmAdapter {
    /// `dspy.ChatAdapter` (without the silent JSON fallback, which would cost a second LM call).
    #[default]
    Chat,
    /// `dspy.JSONAdapter`.
    Json,
    /// `dspy.XMLAdapter`.
    Xml,
}

#[derive(Debug, Clone, PartialEq)]
enum LmKind {
    Dummy(Value),
    Custom {
        class_path: String,
        kwargs: Map,
    },
    LiteLlm {
        model: String,
        api_base: Option<String>,
        api_key_env: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        cache: Option<bool>,
        kwargs: Map,
    },
}

/// A language model for DSPy.
///
/// ```
/// use snakepit_grpc_bridge::api::dspy::{Lm, LmAdapter};
/// let real = Lm::new("openai/gpt-4o-mini").api_key_env("OPENAI_API_KEY").temperature(0.0);
/// let offline = Lm::dummy(vec![snakepit_grpc_bridge::args([("answer", "42")])]).adapter(LmAdapter::Json);
/// # let _ = (real, offline);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Lm {
    kind: LmKind,
    adapter: LmAdapter,
}

impl Lm {
    /// `dspy.LM(model)`: any LiteLLM model string, e.g. `openai/gpt-4o-mini`.
    pub fn new(model: impl Into<String>) -> Self {
        Lm {
            kind: LmKind::LiteLlm {
                model: model.into(),
                api_base: None,
                api_key_env: None,
                temperature: None,
                max_tokens: None,
                cache: None,
                kwargs: Map::new(),
            },
            adapter: LmAdapter::default(),
        }
    }

    /// [`Lm::new`] with the API key read from the provider's usual variable
    /// ([`provider_key_variable`](Lm::provider_key_variable)), when the provider has one.
    ///
    /// ```
    /// # use snakepit_grpc_bridge::api::dspy::Lm;
    /// let lm = Lm::for_model("openai/gpt-4o-mini");   // key from OPENAI_API_KEY
    /// ```
    pub fn for_model(model: impl Into<String>) -> Self {
        let model = model.into();
        let lm = Lm::new(model.clone());
        match Lm::provider_key_variable(&model) {
            Some(variable) => lm.api_key_env(variable),
            None => lm,
        }
    }

    /// The environment variable that holds the API key of a LiteLLM model string's provider
    /// (`openai/...` → `OPENAI_API_KEY`), for the providers that have one.
    ///
    /// ```
    /// # use snakepit_grpc_bridge::api::dspy::Lm;
    /// assert_eq!(Lm::provider_key_variable("anthropic/claude-sonnet-4"), Some("ANTHROPIC_API_KEY"));
    /// assert_eq!(Lm::provider_key_variable("ollama_chat/llama3"), None);
    /// ```
    pub fn provider_key_variable(model: &str) -> Option<&'static str> {
        let provider = model.split('/').next()?;
        Some(match provider {
            "openai" => "OPENAI_API_KEY",
            "anthropic" => "ANTHROPIC_API_KEY",
            "gemini" => "GEMINI_API_KEY",
            "mistral" => "MISTRAL_API_KEY",
            "groq" => "GROQ_API_KEY",
            "together_ai" => "TOGETHERAI_API_KEY",
            "deepseek" => "DEEPSEEK_API_KEY",
            "cohere" => "COHERE_API_KEY",
            "openrouter" => "OPENROUTER_API_KEY",
            _ => return None,
        })
    }

    /// `dspy.utils.DummyLM(answers)`: a list of answer maps served in order, or a map from prompt
    /// substrings to answer maps. Values may be native or strings; DSPy coerces them.
    pub fn dummy(answers: impl Into<Value>) -> Self {
        Lm {
            kind: LmKind::Dummy(answers.into()),
            adapter: LmAdapter::default(),
        }
    }

    /// Any `dspy.BaseLM` subclass importable in the workers, created with `kwargs` (and the
    /// adapter, when its constructor takes one): your own LM client, or a test double.
    pub fn custom(class_path: impl Into<String>, kwargs: Map) -> Self {
        Lm {
            kind: LmKind::Custom {
                class_path: class_path.into(),
                kwargs,
            },
            adapter: LmAdapter::default(),
        }
    }

    /// Chooses the adapter.
    pub fn adapter(mut self, adapter: LmAdapter) -> Self {
        self.adapter = adapter;
        self
    }

    fn litellm(mut self, set: impl FnOnce(&mut LmKind)) -> Self {
        set(&mut self.kind);
        self
    }

    /// The API base URL.
    pub fn api_base(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.litellm(|k| {
            if let LmKind::LiteLlm { api_base, .. } = k {
                *api_base = Some(url)
            }
        })
    }

    /// The environment variable (of the worker processes) holding the API key. The key itself
    /// never crosses the bridge.
    pub fn api_key_env(self, variable: impl Into<String>) -> Self {
        let variable = variable.into();
        self.litellm(|k| {
            if let LmKind::LiteLlm { api_key_env, .. } = k {
                *api_key_env = Some(variable)
            }
        })
    }

    /// The sampling temperature.
    pub fn temperature(self, value: f64) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { temperature, .. } = k {
                *temperature = Some(value)
            }
        })
    }

    /// The completion token limit.
    pub fn max_tokens(self, value: u32) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { max_tokens, .. } = k {
                *max_tokens = Some(value)
            }
        })
    }

    /// Whether DSPy caches completions.
    pub fn cache(self, value: bool) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { cache, .. } = k {
                *cache = Some(value)
            }
        })
    }

    /// Any other keyword argument of `dspy.LM`, passed through to it (and to LiteLLM): `top_p`,
    /// `num_retries`, `stop`, ... Ignored by DummyLM and custom LMs (give those their own
    /// `kwargs`).
    ///
    /// ```
    /// # use snakepit_grpc_bridge::api::dspy::Lm;
    /// let lm = Lm::for_model("openai/gpt-4o-mini").kwarg("top_p", 0.9).kwarg("num_retries", 3);
    /// ```
    pub fn kwarg(self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let (name, value) = (name.into(), value.into());
        self.litellm(|k| {
            if let LmKind::LiteLlm { kwargs, .. } = k {
                kwargs.insert(name, value);
            }
        })
    }

    /// The environment variable a LiteLLM LM reads its API key from, if it has one.
    pub fn key_variable(&self) -> Option<&str> {
        match &self.kind {
            LmKind::LiteLlm { api_key_env, .. } => api_key_env.as_deref(),
            _ => None,
        }
    }

    /// The model string of a LiteLLM LM (`None` for DummyLM and custom LMs).
    pub fn model(&self) -> Option<&str> {
        match &self.kind {
            LmKind::LiteLlm { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The LM as its encoded `LmConfig` message: for Python code of the bridge that takes LMs as
    /// values (an optimiser's prompt or reflection LM). The key itself never crosses, only the
    /// name of its variable.
    pub fn to_config_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_proto())
    }

    pub(crate) fn to_proto(&self) -> pb::LmConfig {
        let kind = match &self.kind {
            LmKind::Dummy(answers) => pb::lm_config::Kind::Dummy(pb::DummyLmConfig {
                answers: Some(answers.into()),
            }),
            LmKind::Custom { class_path, kwargs } => {
                pb::lm_config::Kind::Custom(pb::CustomLmConfig {
                    class_path: class_path.clone(),
                    kwargs: Some(map_to_proto(kwargs)),
                })
            }
            LmKind::LiteLlm {
                model,
                api_base,
                api_key_env,
                temperature,
                max_tokens,
                cache,
                kwargs,
            } => pb::lm_config::Kind::Litellm(pb::LiteLlmConfig {
                model: model.clone(),
                api_base: api_base.clone().unwrap_or_default(),
                api_key_env: api_key_env.clone().unwrap_or_default(),
                temperature: *temperature,
                max_tokens: *max_tokens,
                cache: *cache,
                kwargs: (!kwargs.is_empty()).then(|| map_to_proto(kwargs)),
            }),
        };
        pb::LmConfig {
            kind: Some(kind),
            adapter: match self.adapter {
                LmAdapter::Chat => "chat",
                LmAdapter::Json => "json",
                LmAdapter::Xml => "xml",
            }
            .into(),
        }
    }

    /// The configuration as protobuf bytes, for a worker's settings file.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_proto())
    }
}
