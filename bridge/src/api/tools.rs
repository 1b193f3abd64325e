//! Tools in both directions: Rust calling Python tools (plain, streaming, or fed a stream), and
//! Python calling Rust tools registered for a session (plain or streaming).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::api::sessions::Session;
use crate::bridge::Bridge;
use crate::convert::{map_from_proto, map_to_proto};
use crate::error::{BridgeError, Result};
use crate::proto::{
    self as pb, callback_client_message, callback_result, callback_server_message,
    execute_tool_response, tool_chunk,
};
use crate::value::{Map, Value};

/// One parameter of a Python tool.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolParameter {
    /// Its name.
    pub name: String,
    /// Its Python annotation, e.g. `int` or `list[str]`.
    pub type_name: String,
    /// Whether a call must give it.
    pub required: bool,
    /// Its default value, when it has one that can cross the wire.
    pub default: Option<Value>,
}

/// A Python tool as the worker describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// Its docstring or given description.
    pub description: String,
    /// Its parameters, in order.
    pub parameters: Vec<ToolParameter>,
    /// Whether it yields chunks (use [`Session::stream_tool`]).
    pub streaming: bool,
}

impl TryFrom<pb::ToolSpec> for ToolSpec {
    type Error = BridgeError;

    fn try_from(spec: pb::ToolSpec) -> Result<Self> {
        Ok(ToolSpec {
            name: spec.name,
            description: spec.description,
            parameters: spec
                .parameters
                .into_iter()
                .map(|p| {
                    Ok(ToolParameter {
                        name: p.name,
                        type_name: p.r#type,
                        required: p.required,
                        default: p.default.map(Value::try_from).transpose()?,
                    })
                })
                .collect::<Result<_>>()?,
            streaming: spec.streaming,
        })
    }
}

fn tool_result(response: pb::ExecuteToolResponse) -> Result<Value> {
    match response.result {
        Some(execute_tool_response::Result::Value(value)) => Value::try_from(value),
        Some(execute_tool_response::Result::Error(error)) => Err(error.into()),
        None => Err(BridgeError::Protocol("an empty tool response".into())),
    }
}

impl Bridge {
    /// The Python tools the workers offer.
    pub async fn list_tools(&self) -> Result<Vec<ToolSpec>> {
        let response = self
            .call(None, |mut c| async move {
                c.list_tools(pb::ListToolsRequest {}).await
            })
            .await?;
        response
            .into_inner()
            .tools
            .into_iter()
            .map(ToolSpec::try_from)
            .collect()
    }

    /// Calls a Python tool outside any session, on the least-loaded worker.
    pub async fn call_tool(&self, name: &str, arguments: Map) -> Result<Value> {
        let request = pb::ExecuteToolRequest {
            session_id: String::new(),
            tool_name: name.to_owned(),
            arguments: Some(map_to_proto(&arguments)),
        };
        let response = self
            .call(None, |mut c| async move { c.execute_tool(request).await })
            .await?;
        tool_result(response.into_inner())
    }
}

/// Chunks of a streaming tool, in order; ends after the last one, or with one error.
pub type ToolStream = BoxStream<'static, Result<Value>>;

pub use super::tool_error::ToolError;

/// The boxed future a Rust tool returns.
pub type ToolFuture = Pin<Box<dyn Future<Output = std::result::Result<Value, ToolError>> + Send>>;

/// The boxed stream a streaming Rust tool returns.
pub type ToolOutput = BoxStream<'static, std::result::Result<Value, ToolError>>;

#[derive(Clone)]
enum RustTool {
    Call(Arc<dyn Fn(Map) -> ToolFuture + Send + Sync>),
    Stream(Arc<dyn Fn(Map) -> ToolOutput + Send + Sync>),
}

impl Session {
    /// Calls a Python tool in this session (tools that take `ctx` see the session).
    pub async fn call_tool(&self, name: &str, arguments: Map) -> Result<Value> {
        let request = pb::ExecuteToolRequest {
            session_id: self.id.clone(),
            tool_name: name.to_owned(),
            arguments: Some(map_to_proto(&arguments)),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.execute_tool(request).await
            })
            .await?;
        tool_result(response.into_inner())
    }

    /// Calls a streaming Python tool: a stream of its chunks in order. The call holds a request
    /// slot of the session's worker until the stream ends or is dropped.
    pub async fn stream_tool(&self, name: &str, arguments: Map) -> Result<ToolStream> {
        let request = pb::ExecuteToolRequest {
            session_id: self.id.clone(),
            tool_name: name.to_owned(),
            arguments: Some(map_to_proto(&arguments)),
        };
        let checkout = self.bridge.checkout(Some(&self.id)).await?;
        let mut client = checkout.connection().client.clone();
        let started = checkout.run(client.execute_streaming_tool(request)).await?;
        let streaming = match started {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.bridge.failure(&checkout, status).await),
        };
        Ok(tool_chunks(self.bridge.clone(), checkout, streaming))
    }

    /// Calls a Python tool with its parameter `input_parameter` fed from `input` (an async
    /// iterator in Python, ending when `input` does; an `Err` item is raised in the tool as it
    /// reads it), and streams the tool's answer: its chunks if it yields them, else its result as
    /// one item. Dropping the returned stream cancels the call: the tool's generator is closed and
    /// `input` is no longer read.
    ///
    /// ```no_run
    /// # async fn demo(session: snakepit_grpc_bridge::api::sessions::Session) -> snakepit_grpc_bridge::Result<()> {
    /// use futures_util::{StreamExt, stream};
    /// use snakepit_grpc_bridge::{Map, Value};
    /// // @tool async def upper(lines): async for line in lines: yield line.upper()
    /// let input = stream::iter(["a", "b"].map(|s| Ok(Value::from(s))));
    /// let mut out = session.exchange_tool("upper", Map::new(), "lines", input).await?;
    /// while let Some(line) = out.next().await {
    ///     println!("{:?}", line?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn exchange_tool<S>(
        &self,
        name: &str,
        arguments: Map,
        input_parameter: &str,
        input: S,
    ) -> Result<ToolStream>
    where
        S: futures_util::Stream<Item = std::result::Result<Value, ToolError>> + Send + 'static,
    {
        let start = pb::ToolInput {
            kind: Some(pb::tool_input::Kind::Start(pb::ToolExchangeStart {
                call: Some(pb::ExecuteToolRequest {
                    session_id: self.id.clone(),
                    tool_name: name.to_owned(),
                    arguments: Some(map_to_proto(&arguments)),
                }),
                input_parameter: input_parameter.to_owned(),
            })),
        };
        let items = input
            .map(|item| pb::ToolInput {
                kind: Some(match item {
                    Ok(value) => pb::tool_input::Kind::Item((&value).into()),
                    Err(error) => pb::tool_input::Kind::Error(error.to_proto()),
                }),
            })
            .chain(stream::once(async {
                pb::ToolInput {
                    kind: Some(pb::tool_input::Kind::End(true)),
                }
            }));
        // After an error item the tool has failed: nothing more is sent.
        let requests = stream::once(async { start }).chain(items.scan(false, |failed, message| {
            let done = *failed;
            *failed |= matches!(message.kind, Some(pb::tool_input::Kind::Error(_)));
            async move { (!done).then_some(message) }
        }));
        // The input is read by a task of its own that stops as soon as the answer is dropped
        // (gRPC would keep polling it until the worker's reset arrives).
        let (sender, receiver) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut requests = std::pin::pin!(requests);
            let mut stopped = stopped;
            loop {
                let message = tokio::select! {
                    _ = &mut stopped => return,
                    message = requests.next() => message,
                };
                let Some(message) = message else { return };
                tokio::select! {
                    _ = &mut stopped => return,
                    sent = sender.send(message) => if sent.is_err() { return },
                }
            }
        });
        let checkout = self.bridge.checkout(Some(&self.id)).await?;
        let mut client = checkout.connection().client.clone();
        let started = checkout
            .run(client.exchange_tool(ReceiverStream::new(receiver)))
            .await?;
        let streaming = match started {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.bridge.failure(&checkout, status).await),
        };
        let answer = tool_chunks(self.bridge.clone(), checkout, streaming);
        Ok(answer
            .map(move |item| {
                let _input_runs_while_the_answer_lives = &stop;
                item
            })
            .boxed())
    }

    /// Registers a Rust tool that Python code in this session can call with
    /// `await ctx.call_rust(name, **arguments)`. Returns once the worker knows the tool.
    ///
    /// The tool runs on the Tokio runtime, concurrently with other calls; if the Python caller is
    /// cancelled, the tool's future is dropped. An `Err` reaches Python as an exception (see
    /// [`ToolError`]; `?` turns a `String` or `&str` error into a failure with that message).
    pub async fn register_rust_tool<F, Fut>(
        &self,
        name: &str,
        description: &str,
        tool: F,
    ) -> Result<()>
    where
        F: Fn(Map) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Value, ToolError>> + Send + 'static,
    {
        let tool = RustTool::Call(Arc::new(move |arguments| Box::pin(tool(arguments))));
        self.register(name, description, false, tool).await
    }

    /// Registers a streaming Rust tool: Python code reads its items as they come with
    /// `async for item in ctx.stream_rust(name, **arguments)` (or gets them all as a list from
    /// `ctx.call_rust`). When the Python reader stops early or is cancelled, the stream is
    /// dropped. An `Err` item ends the stream and is raised in Python.
    ///
    /// ```no_run
    /// # async fn demo(session: snakepit_grpc_bridge::api::sessions::Session) -> snakepit_grpc_bridge::Result<()> {
    /// use futures_util::stream;
    /// use snakepit_grpc_bridge::Value;
    /// use snakepit_grpc_bridge::api::tools::ToolError;
    /// session
    ///     .register_rust_streaming_tool("count", "Counts to n.", |args| {
    ///         let n = args.get("n").and_then(Value::as_i64).unwrap_or(3);
    ///         stream::iter((1..=n).map(|i| Ok::<_, ToolError>(Value::Int(i))))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_rust_streaming_tool<F, S>(
        &self,
        name: &str,
        description: &str,
        tool: F,
    ) -> Result<()>
    where
        F: Fn(Map) -> S + Send + Sync + 'static,
        S: futures_util::Stream<Item = std::result::Result<Value, ToolError>> + Send + 'static,
    {
        let tool = RustTool::Stream(Arc::new(move |arguments| tool(arguments).boxed()));
        self.register(name, description, true, tool).await
    }

    async fn register(
        &self,
        name: &str,
        description: &str,
        streaming: bool,
        tool: RustTool,
    ) -> Result<()> {
        let spec = pb::ToolSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            parameters: Vec::new(),
            streaming,
        };
        let mut guard = self.callbacks.lock().await;
        let link = match guard.as_ref() {
            Some(link) if !link.is_closed() => link.clone(),
            _ => {
                let connection = self.bridge.connection(&self.id).await?;
                let link = CallbackLink::open(connection.client, &self.id).await?;
                *guard = Some(link.clone());
                link
            }
        };
        drop(guard);
        link.register(spec, tool).await
    }
}

/// A session's open callback stream and the Rust tools behind it.
pub(crate) struct CallbackLink {
    outgoing: mpsc::Sender<pb::CallbackClientMessage>,
    tools: Arc<Mutex<HashMap<String, RustTool>>>,
    registrations: Arc<Mutex<HashMap<String, oneshot::Sender<Result<()>>>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for CallbackLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tools = self.tools.lock().map(|t| t.len()).unwrap_or_default();
        f.debug_struct("CallbackLink")
            .field("tools", &tools)
            .finish()
    }
}

fn callback_error(message: String) -> pb::ErrorInfo {
    pb::ErrorInfo {
        kind: pb::ErrorKind::CallbackFailed as i32,
        r#type: "RustToolError".into(),
        message,
        ..Default::default()
    }
}

/// The Rust tool calls in flight on one callback stream, by call id: a cancel aborts one.
type Running = Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>>;

/// Runs one call of a Rust tool in a task of its own and sends its answer: the result, or each
/// item of a streaming tool and then the end (a null result) or its error.
fn serve(
    tool: Option<RustTool>,
    request: pb::CallbackRequest,
    replies: mpsc::Sender<pb::CallbackClientMessage>,
    running: Running,
) {
    let call_id = request.call_id;
    let result = move |result| pb::CallbackClientMessage {
        kind: Some(callback_client_message::Kind::Result(pb::CallbackResult {
            call_id,
            result: Some(result),
        })),
    };
    let cleanup = running.clone();
    // Registered before the task can finish, under the lock the task's cleanup takes too.
    let mut calls = running.lock().expect("running lock");
    let task = tokio::spawn(async move {
        let arguments = match (&tool, request.arguments.map(map_from_proto)) {
            (None, _) => Err(callback_error(format!(
                "no Rust tool named {:?}",
                request.tool_name
            ))),
            (_, Some(Err(e))) => Err(callback_error(e.to_string())),
            (Some(_), arguments) => Ok(arguments.transpose().ok().flatten().unwrap_or_default()),
        };
        let answer = match (tool, arguments) {
            (_, Err(error)) => callback_result::Result::Error(error),
            (Some(RustTool::Call(tool)), Ok(arguments)) => match tool(arguments).await {
                Ok(value) => callback_result::Result::Value((&value).into()),
                Err(error) => callback_result::Result::Error(error.to_proto()),
            },
            (Some(RustTool::Stream(tool)), Ok(arguments)) => {
                let mut items = tool(arguments);
                loop {
                    match items.next().await {
                        Some(Ok(value)) => {
                            let chunk = pb::CallbackClientMessage {
                                kind: Some(callback_client_message::Kind::Chunk(
                                    pb::CallbackChunk {
                                        call_id,
                                        value: Some((&value).into()),
                                    },
                                )),
                            };
                            if replies.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(error)) => break callback_result::Result::Error(error.to_proto()),
                        None => break callback_result::Result::Value((&Value::Null).into()),
                    }
                }
            }
            (None, Ok(_)) => unreachable!("no tool is an error above"),
        };
        let _ = replies.send(result(answer)).await;
        cleanup.lock().expect("running lock").remove(&call_id);
    });
    calls.insert(call_id, task.abort_handle());
}

impl CallbackLink {
    async fn open(mut client: crate::bridge::Client, session_id: &str) -> Result<Arc<Self>> {
        let (outgoing, requests) = mpsc::channel(256);
        let open = pb::CallbackClientMessage {
            kind: Some(callback_client_message::Kind::Open(pb::CallbackOpen {
                session_id: session_id.to_owned(),
            })),
        };
        outgoing
            .send(open)
            .await
            .map_err(|_| BridgeError::Protocol("the callback channel closed at once".into()))?;
        let mut incoming = client
            .tool_callbacks(ReceiverStream::new(requests))
            .await
            .map_err(|status| BridgeError::CallbackFailed {
                message: format!("cannot open the callback stream: {status}"),
            })?
            .into_inner();
        let tools: Arc<Mutex<HashMap<String, RustTool>>> = Arc::default();
        let registrations: Arc<Mutex<HashMap<String, oneshot::Sender<Result<()>>>>> =
            Arc::default();
        let (reader_tools, reader_registrations, replies) =
            (tools.clone(), registrations.clone(), outgoing.clone());
        let running: Running = Arc::default();
        let session = session_id.to_owned();
        let reader = tokio::spawn(async move {
            loop {
                let message = match incoming.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(session, %status, "the callback stream ended");
                        break;
                    }
                };
                match message.kind {
                    Some(callback_server_message::Kind::Registered(done)) => {
                        let waiter = reader_registrations
                            .lock()
                            .expect("registrations lock")
                            .remove(&done.tool_name);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(Ok(()));
                        }
                    }
                    Some(callback_server_message::Kind::Request(request)) => {
                        let tool = reader_tools
                            .lock()
                            .expect("tools lock")
                            .get(&request.tool_name)
                            .cloned();
                        serve(tool, request, replies.clone(), running.clone());
                    }
                    Some(callback_server_message::Kind::Cancel(cancel)) => {
                        let call = running
                            .lock()
                            .expect("running lock")
                            .remove(&cancel.call_id);
                        if let Some(call) = call {
                            call.abort();
                        }
                    }
                    Some(callback_server_message::Kind::Error(error)) => {
                        let error = BridgeError::from(error);
                        tracing::warn!(session, %error, "the worker refused the callback stream");
                        for (_, waiter) in reader_registrations
                            .lock()
                            .expect("registrations lock")
                            .drain()
                        {
                            let _ = waiter.send(Err(BridgeError::CallbackFailed {
                                message: error.to_string(),
                            }));
                        }
                    }
                    None => {}
                }
            }
            // Calls still running have nobody to answer to.
            for (_, call) in running.lock().expect("running lock").drain() {
                call.abort();
            }
            // Waiters of registrations that will never be confirmed learn it (by the drop).
            reader_registrations
                .lock()
                .expect("registrations lock")
                .clear();
        });
        Ok(Arc::new(CallbackLink {
            outgoing,
            tools,
            registrations,
            reader,
        }))
    }

    async fn register(&self, spec: pb::ToolSpec, tool: RustTool) -> Result<()> {
        let name = spec.name.clone();
        let (confirmed, confirmation) = oneshot::channel();
        self.tools
            .lock()
            .expect("tools lock")
            .insert(name.clone(), tool);
        self.registrations
            .lock()
            .expect("registrations lock")
            .insert(name.clone(), confirmed);
        let message = pb::CallbackClientMessage {
            kind: Some(callback_client_message::Kind::Register(
                pb::CallbackRegister { tool: Some(spec) },
            )),
        };
        let closed = || BridgeError::CallbackFailed {
            message: format!("the callback stream closed before {name:?} was registered"),
        };
        self.outgoing.send(message).await.map_err(|_| closed())?;
        confirmation.await.map_err(|_| closed())?
    }

    fn is_closed(&self) -> bool {
        self.outgoing.is_closed() || self.reader.is_finished()
    }

    pub(crate) fn close(&self) {
        self.reader.abort();
    }
}

impl Drop for CallbackLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The chunks of a streaming tool's answer, ending with `done` (or one error); the stream holds
/// the checkout (a request slot) until it ends or is dropped.
fn tool_chunks(
    bridge: Bridge,
    checkout: snakepit::Checkout<crate::adapter::GrpcPythonAdapter>,
    streaming: tonic::Streaming<pb::ToolChunk>,
) -> ToolStream {
    let state = Some((checkout, streaming));
    stream::unfold(state, move |state| {
        let bridge = bridge.clone();
        async move {
            let (checkout, mut streaming) = state?;
            let next = checkout.run(streaming.message()).await;
            let item = match next {
                Err(pool_error) => Err(pool_error.into()),
                Ok(Err(status)) => Err(bridge.failure(&checkout, status).await),
                Ok(Ok(None)) => Err(BridgeError::Protocol(
                    "the streaming tool ended without a final message".into(),
                )),
                Ok(Ok(Some(chunk))) => match chunk.kind {
                    Some(tool_chunk::Kind::Chunk(value)) => match Value::try_from(value) {
                        Ok(value) => return Some((Ok(value), Some((checkout, streaming)))),
                        Err(e) => Err(e),
                    },
                    // A tool that returns (not yields) its answer: one last item.
                    Some(tool_chunk::Kind::Done(value)) => match Value::try_from(value) {
                        Ok(Value::Null) => return None,
                        Ok(value) => Ok(value),
                        Err(e) => Err(e),
                    },
                    Some(tool_chunk::Kind::Error(error)) => Err(error.into()),
                    None => Err(BridgeError::Protocol("an empty stream message".into())),
                },
            };
            Some((item, None))
        }
    })
    .boxed()
}
