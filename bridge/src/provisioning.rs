//! What building the Python environment reports as it goes: lines on standard error by default,
//! or events to a reporter ([`EnvironmentOptions::on_progress`],
//! [`BridgeBuilder::on_provisioning`](crate::BridgeBuilder::on_provisioning)), e.g. a progress bar.
//!
//! [`EnvironmentOptions::on_progress`]: crate::environment::EnvironmentOptions::on_progress

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

/// One step of provisioning, or one line of the installer's output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProvisionProgress {
    /// What is happening.
    pub message: String,
    /// Whether this is a line of a tool's output (uv, pip) rather than a step of dspex's own.
    pub detail: bool,
}

/// Receives [`ProvisionProgress`] events; called from the provisioning threads.
#[derive(Clone)]
pub struct ProvisionReporter(Arc<dyn Fn(&ProvisionProgress) + Send + Sync>);

impl ProvisionReporter {
    /// A reporter calling `report` for each event.
    pub fn new(report: impl Fn(&ProvisionProgress) + Send + Sync + 'static) -> Self {
        ProvisionReporter(Arc::new(report))
    }
}

impl fmt::Debug for ProvisionReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProvisionReporter")
    }
}

thread_local! {
    static REPORTER: RefCell<Option<ProvisionReporter>> = const { RefCell::new(None) };
}

/// Runs `work` with `reporter` receiving this thread's provisioning events.
pub(crate) fn with_reporter<T>(reporter: Option<ProvisionReporter>, work: impl FnOnce() -> T) -> T {
    let previous = REPORTER.with(|r| r.replace(reporter));
    let result = work();
    REPORTER.with(|r| r.replace(previous));
    result
}

/// This thread's reporter, to hand to a helper thread.
pub(crate) fn current() -> Option<ProvisionReporter> {
    REPORTER.with(|r| r.borrow().clone())
}

/// Reports one event: a step, or (indented by two spaces) a line of a tool's output.
pub(crate) fn report(message: &str) {
    match current() {
        Some(reporter) => {
            let (message, detail) = match message.strip_prefix("  ") {
                Some(line) => (line, true),
                None => (message, false),
            };
            (reporter.0)(&ProvisionProgress {
                message: message.to_owned(),
                detail,
            });
        }
        // Straight to the stderr handle, not eprintln!, so the test harness does not swallow it.
        None => {
            let _ = writeln!(io::stderr(), "[dspex] {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_go_to_the_reporter_of_their_thread_and_helpers_it_hands_on() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let reporter = ProvisionReporter::new(move |p| kept.lock().unwrap().push(p.clone()));
        with_reporter(Some(reporter), || {
            report("creating the environment");
            let handed = current();
            std::thread::spawn(move || with_reporter(handed, || report("  Resolved 96 packages")))
                .join()
                .unwrap();
        });
        assert!(current().is_none(), "the reporter ends with its scope");
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            [
                ProvisionProgress {
                    message: "creating the environment".into(),
                    detail: false
                },
                ProvisionProgress {
                    message: "Resolved 96 packages".into(),
                    detail: true
                },
            ]
        );
    }
}
