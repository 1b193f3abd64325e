//! Progress of long work — provisioning, batches, evaluations, compilations — as events, and a
//! terminal progress bar that renders them.
//!
//! Each long operation takes a callback: [`DspexBuilder::on_provisioning`](crate::DspexBuilder::on_provisioning),
//! [`Module::batch_reporting`](crate::Module::batch_reporting),
//! [`Evaluate::on_progress`](crate::Evaluate::on_progress), and each optimiser's `on_progress`.
//! [`ProgressBar`] makes those callbacks: it draws on standard error when that is a terminal and
//! stays silent otherwise (a service's logs, CI).
//!
//! ```no_run
//! use dspex::prelude::*;
//! use dspex::Example;
//! use dspex::progress::ProgressBar;
//!
//! /// Answer the question.
//! #[dspy_signature]
//! pub struct Q {
//!     /// The question.
//!     #[input]
//!     pub q: String,
//!     /// The answer.
//!     #[output]
//!     pub a: String,
//! }
//!
//! async fn evaluate(dspex: &Dspex, devset: &[Example<QInput, QOutput>]) -> dspex::Result<()> {
//!     let bar = ProgressBar::new("evaluating");
//!     let report = Evaluate::new(devset, |ex: &Example<QInput, QOutput>, out: &QOutput| ex.output.a == out.a)
//!         .on_progress(bar.evaluation())
//!         .run(&Predict::<Q>::new(dspex))
//!         .await?;
//!     bar.finish(format!("score {:.2}", report.score));
//!     Ok(())
//! }
//! ```

use std::time::Duration;

use indicatif::{ProgressDrawTarget, ProgressStyle};

pub use snakepit_grpc_bridge::ProvisionProgress;

use crate::evaluate::EvaluateProgress;
use crate::optimize::CompileProgress;

/// Progress of a batch, after each input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchProgress {
    /// Inputs done (answered or failed).
    pub done: usize,
    /// Inputs in all.
    pub total: usize,
    /// Inputs whose call failed.
    pub failed: usize,
}

/// A progress bar (or spinner, while the total is unknown) on standard error, hidden when standard
/// error is not a terminal. Cheap to clone; its callbacks may be called from any task.
#[derive(Debug, Clone)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

const SPINNER: &str = "{spinner} {prefix} [{elapsed}] {msg}";
const BAR: &str = "{prefix} [{elapsed}] {bar:30} {pos}/{len} {msg}";

impl ProgressBar {
    /// A bar labelled `label`, drawn on standard error if it is a terminal.
    pub fn new(label: impl Into<String>) -> Self {
        Self::with_target(label, ProgressDrawTarget::stderr())
    }

    /// A bar drawn on `target` (e.g. `ProgressDrawTarget::hidden()`, or a test's in-memory
    /// terminal).
    pub fn with_target(label: impl Into<String>, target: ProgressDrawTarget) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        bar.set_style(ProgressStyle::with_template(SPINNER).expect("a valid template"));
        bar.set_prefix(label.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressBar { bar }
    }

    /// Whether nothing is drawn (standard error is not a terminal).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// The bar's current message.
    pub fn message(&self) -> String {
        self.bar.message()
    }

    /// `(done, total)`, once a total is known.
    pub fn position(&self) -> (u64, Option<u64>) {
        (self.bar.position(), self.bar.length())
    }

    fn counting(&self, done: usize, total: usize, message: String) {
        if self.bar.length() != Some(total as u64) {
            self.bar
                .set_style(ProgressStyle::with_template(BAR).expect("a valid template"));
            self.bar.set_length(total as u64);
        }
        self.bar.set_position(done as u64);
        self.bar.set_message(message);
    }

    /// A callback for [`DspexBuilder::on_provisioning`](crate::DspexBuilder::on_provisioning):
    /// shows each step, and the installer's last line under it.
    pub fn provisioning(&self) -> impl Fn(&ProvisionProgress) + Send + Sync + 'static {
        let bar = self.bar.clone();
        let step = std::sync::Mutex::new(String::new());
        move |p: &ProvisionProgress| {
            let mut step = step.lock().unwrap_or_else(|e| e.into_inner());
            if p.detail {
                bar.set_message(format!("{step}: {}", p.message));
            } else {
                step.clone_from(&p.message);
                bar.set_message(p.message.clone());
            }
        }
    }

    /// A callback for [`Module::batch_reporting`](crate::Module::batch_reporting).
    pub fn batch(&self) -> impl Fn(&BatchProgress) + Send + Sync + 'static {
        let this = self.clone();
        move |p: &BatchProgress| this.counting(p.done, p.total, failed(p.failed))
    }

    /// A callback for [`Evaluate::on_progress`](crate::Evaluate::on_progress).
    pub fn evaluation(&self) -> impl Fn(&EvaluateProgress) + Send + Sync + 'static {
        let this = self.clone();
        move |p: &EvaluateProgress| this.counting(p.done, p.total, failed(p.failed))
    }

    /// A callback for an optimiser's `on_progress`: metric calls, trials, last and best score.
    pub fn compilation(&self) -> impl Fn(&CompileProgress) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |p: &CompileProgress| {
            let mut message = format!(
                "{}: {} metric calls, last {:.2}, best {:.2}",
                p.optimizer, p.metric_calls, p.last_score, p.best_score
            );
            if p.trials > 0 {
                message.push_str(&format!("; {} trials", p.trials));
                if let Some(best) = p.best_trial_score {
                    message.push_str(&format!(", best trial {best:.2}"));
                }
            }
            bar.set_message(message);
        }
    }

    /// Ends the bar, leaving `message` on its line (when drawn).
    pub fn finish(&self, message: impl Into<String>) {
        self.bar.finish_with_message(message.into());
    }

    /// Ends the bar and clears its line.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

fn failed(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("({n} failed)")
    }
}
