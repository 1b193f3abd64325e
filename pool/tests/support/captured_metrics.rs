//! A `metrics` recorder for tests that keeps every value readable: counters and gauges as they
//! stand, histograms with all their samples (the debugging recorder's snapshots reset them).
//! Shared by the pool's tests and the workspace tests (`#[path]`).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// The installed recorder's values.
#[derive(Clone)]
pub struct Captured(Arc<Registry<Key, AtomicStorage>>);

/// `name{label=value,...}`, labels in the order they were given.
fn name_of(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Captured {
    /// Installs the recorder for this process the first time; the same one afterwards.
    pub fn install() -> Captured {
        static CAPTURED: OnceLock<Captured> = OnceLock::new();
        CAPTURED
            .get_or_init(|| {
                let captured = Captured(Arc::new(Registry::atomic()));
                metrics::set_global_recorder(captured.clone())
                    .expect("the only recorder of this test binary");
                captured
            })
            .clone()
    }

    /// A counter's value (`name{label=value}`), 0 if never touched.
    pub fn counter(&self, name: &str) -> u64 {
        self.0
            .get_counter_handles()
            .into_iter()
            .find(|(key, _)| name_of(key) == name)
            .map_or(0, |(_, c)| c.load(Ordering::Acquire))
    }

    /// A gauge's value, if it was ever registered.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.0
            .get_gauge_handles()
            .into_iter()
            .find(|(key, _)| name_of(key) == name)
            .map(|(_, g)| f64::from_bits(g.load(Ordering::Acquire)))
    }

    /// A histogram's samples.
    pub fn samples(&self, name: &str) -> Vec<f64> {
        self.0
            .get_histogram_handles()
            .into_iter()
            .find(|(key, _)| name_of(key) == name)
            .map(|(_, h)| h.data())
            .unwrap_or_default()
    }

    /// Every metric's name with its labels, for failure messages.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.0.get_counter_handles().keys())
            .chain(self.0.get_gauge_handles().keys())
            .chain(self.0.get_histogram_handles().keys())
            .map(name_of)
            .collect();
        names.sort();
        names
    }
}

impl Recorder for Captured {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
