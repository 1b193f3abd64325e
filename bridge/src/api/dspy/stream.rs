//! Streamed DSPy calls: each output field in pieces as the LM writes it (DSPy's `streamify` and
//! stream listeners), then the whole prediction.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use snakepit::Checkout;
use tracing::Instrument;

use crate::adapter::GrpcPythonAdapter;
use crate::bridge::Bridge;
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, stream_event};
use crate::telemetry::CallScope;
use crate::value::Map;

use super::prediction::{call_result, prediction};
use super::{
    CallOptions, ModuleState, Prediction, SignatureSpec, module_request, with_definitions,
};

/// A piece of one output field of one predictor, as DSPy's stream listener cut it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldChunk {
    /// The predictor's name in the module (`self` for a lone `Predict`).
    pub predictor: String,
    /// The output field.
    pub field: String,
    /// The piece of text.
    pub text: String,
    /// Whether DSPy marked it as the field's last piece (it does not for a module's last field).
    pub last: bool,
}

/// One item of a streamed call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamItem {
    /// A piece of an output field.
    Chunk(FieldChunk),
    /// One of DSPy's status messages (a module or tool starting, ...).
    Status(String),
    /// The whole prediction, last.
    Done(Prediction),
}

/// The items of a streamed call, ending after [`StreamItem::Done`] or with one error. Dropping it
/// cancels the call in its worker (the LM request is abandoned) and frees the worker's slot.
pub type PredictionStream = BoxStream<'static, Result<StreamItem>>;

/// What the stream holds while it runs.
struct Running {
    bridge: Bridge,
    checkout: Checkout<GrpcPythonAdapter>,
    events: tonic::Streaming<pb::StreamEvent>,
    scope: CallScope,
    deadline: Option<(tokio::time::Instant, Duration)>,
    /// Whether the stream gave its last item (the prediction or an error).
    finished: bool,
}

impl Drop for Running {
    /// A stream dropped before its end was cancelled by its consumer.
    fn drop(&mut self) {
        if !self.finished {
            self.scope.finish_as("cancelled", None);
        }
    }
}

impl Running {
    /// Records the call's failure and returns it.
    fn failed(&self, error: BridgeError) -> BridgeError {
        self.scope.finish_as(error.kind(), Some(&error));
        error
    }

    /// The next item, or `None` once the prediction (or an error) was given.
    async fn next(&mut self) -> Option<Result<StreamItem>> {
        let message = self.checkout.watch(self.events.message());
        let message = match self.deadline {
            Some((at, after)) => match tokio::time::timeout_at(at, message).await {
                Ok(message) => message,
                Err(_) => return Some(Err(self.failed(BridgeError::DeadlineExceeded { after }))),
            },
            None => message.await,
        };
        let event = match message {
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None)) => {
                let e = BridgeError::Protocol("the stream ended without a result".into());
                return Some(Err(self.failed(e)));
            }
            Ok(Err(status)) => {
                let e = self.bridge.failure(&self.checkout, status).await;
                return Some(Err(self.failed(e)));
            }
            Err(pool) => return Some(Err(self.failed(pool.into()))),
        };
        Some(match event.event {
            Some(stream_event::Event::Chunk(chunk)) => Ok(StreamItem::Chunk(FieldChunk {
                predictor: chunk.predictor,
                field: chunk.field,
                text: chunk.text,
                last: chunk.last,
            })),
            Some(stream_event::Event::Status(status)) => Ok(StreamItem::Status(status)),
            Some(stream_event::Event::Done(response)) => {
                self.scope.received(&response);
                let done = call_result(response).and_then(prediction);
                self.scope.finish(&done);
                done.map(StreamItem::Done)
            }
            None => {
                let e = BridgeError::Protocol("an empty stream event".into());
                self.scope.finish_as(e.kind(), Some(&e));
                Err(e)
            }
        })
    }
}

impl Bridge {
    /// [`run_module_with_state`](Bridge::run_module_with_state), streamed: each output field of
    /// the module's predictors in pieces as the LM writes it, then the prediction. The stream
    /// holds a worker slot until it ends or is dropped; the pool's request timeout does not cut
    /// it (its length is the LM's), [`CallOptions::timeout`] does. Streams are not retried.
    ///
    /// ```no_run
    /// # async fn demo(bridge: snakepit_grpc_bridge::Bridge, qa: snakepit_grpc_bridge::api::dspy::SignatureSpec) -> snakepit_grpc_bridge::Result<()> {
    /// use futures_util::StreamExt;
    /// use snakepit_grpc_bridge::api::dspy::{CallOptions, StreamItem};
    /// use snakepit_grpc_bridge::{Map, args};
    /// let mut stream = bridge
    ///     .stream_module("dspy.Predict", &qa, None, Map::new(), args([("question", "Why?")]), &CallOptions::default())
    ///     .await?;
    /// while let Some(item) = stream.next().await {
    ///     match item? {
    ///         StreamItem::Chunk(chunk) => print!("{}", chunk.text),
    ///         StreamItem::Done(prediction) => println!("\n{:?}", prediction.outputs),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream_module(
        &self,
        class_path: &str,
        signature: &SignatureSpec,
        state: Option<&ModuleState>,
        kwargs: Map,
        inputs: Map,
        options: &CallOptions,
    ) -> Result<PredictionStream> {
        let scope = CallScope::new(class_path, &signature.name, None);
        // A stream sends its definitions along: it is not the hot path, and a resend would need
        // the first answer before the stream starts.
        let request = with_definitions(
            module_request(
                class_path,
                signature,
                state,
                &kwargs,
                &inputs,
                scope.options(options),
            ),
            signature,
            state,
        );
        let deadline = options
            .timeout
            .map(|after| (tokio::time::Instant::now() + after, after));
        let opened = async {
            let mut checkout = self.checkout(None).await?;
            checkout.set_request_timeout(None);
            let mut client = checkout.connection().client.clone();
            let opening = checkout.run(client.stream_module(request));
            let opened = match deadline {
                Some((at, after)) => tokio::time::timeout_at(at, opening)
                    .await
                    .map_err(|_| BridgeError::DeadlineExceeded { after })?,
                None => opening.await,
            };
            match opened? {
                Ok(response) => Ok((checkout, response.into_inner())),
                Err(status) => Err(self.failure(&checkout, status).await),
            }
        }
        .instrument(scope.span().clone())
        .await;
        let (checkout, events) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                scope.finish_as(e.kind(), Some(&e));
                return Err(e);
            }
        };
        let running = Running {
            bridge: self.clone(),
            checkout,
            events,
            scope,
            deadline,
            finished: false,
        };
        Ok(stream::unfold(Some(running), |running| async move {
            let mut running = running?;
            let span = running.scope.span().clone();
            let item = running.next().instrument(span).await?;
            let more = matches!(item, Ok(StreamItem::Chunk(_) | StreamItem::Status(_)));
            if !more {
                running.finished = true;
            }
            Some((item, more.then_some(running)))
        })
        .boxed())
    }
}
