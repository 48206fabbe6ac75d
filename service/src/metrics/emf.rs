//! CloudWatch Embedded Metric Format (EMF) for the Lambda shell, which has no `/metrics` route:
//! after each invocation the changes of the registry's counters and histograms since the
//! previous flush become JSON log lines that CloudWatch Logs turns into metrics. The gauges an
//! operator alarms on go out with every flush as the age they imply (`secret_age_seconds`:
//! seconds since the last successful secret fetch), so a stale secret is visible.
//!
//! Layout of a line: every label of a metric is a dimension, plus `environment`. A line has one
//! value per dimension name, so series whose labels disagree (two routes, two statuses) need
//! separate lines. Series that agree share a line, one directive per set of label names: an
//! invocation serves one request, so its `http_requests_total{method,route,status}` and
//! `http_request_duration_seconds{method,route}` (and any label-free counters) fit one line.
//!
//! Histograms: EMF takes a number or an array of up to 100 numbers per metric, with no bucket
//! counts. We emit the mean of the new observations, once per observation: CloudWatch's
//! SampleCount, Sum and Average stay exact, and with one request per invocation each value is
//! the exact latency, so percentiles across invocations are exact too.

use std::collections::{BTreeMap, HashMap};

use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::Registry;
use serde_json::{json, Map, Value};

/// The CloudWatch namespace of the service's metrics.
pub const NAMESPACE: &str = "OrderService";

/// The dimension every metric carries, so staging, production and previews stay apart.
pub const ENVIRONMENT_DIMENSION: &str = "environment";

/// EMF's limit on the values of one metric in one line.
const MAX_VALUES: usize = 100;

/// Families about the process rather than the service; Lambda reports duration and memory itself.
const SKIPPED_PREFIX: &str = "process_";

/// Gauges holding a Unix time, sent as the seconds since then under the second name.
const AGE_GAUGES: &[(&str, &str)] = &[(
    "secrets_last_success_timestamp_seconds",
    "secret_age_seconds",
)];

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy)]
enum Total {
    Counter(f64),
    Histogram { count: u64, sum: f64 },
}

/// Turns registry totals into EMF lines holding only what changed since the previous flush.
#[derive(Debug)]
pub struct EmfExporter {
    namespace: String,
    environment: String,
    previous: HashMap<(String, Labels), Total>,
}

/// One metric's change since the previous flush.
#[derive(Debug)]
struct Delta {
    name: String,
    labels: Labels,
    unit: &'static str,
    value: Value,
}

impl EmfExporter {
    pub fn new(namespace: impl Into<String>, environment: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            environment: environment.into(),
            previous: HashMap::new(),
        }
    }

    /// EMF documents for everything counted since the previous call: none when nothing
    /// changed, one for a typical invocation, more only when label values disagree.
    pub fn flush(&mut self, registry: &Registry, timestamp_ms: u64) -> Vec<Value> {
        let families = registry.gather();
        let mut deltas = self.deltas(&families);
        deltas.extend(ages(&families, timestamp_ms));
        group(deltas, &self.environment)
            .into_iter()
            .map(|document| document.render(&self.namespace, timestamp_ms))
            .collect()
    }

    fn deltas(&mut self, families: &[MetricFamily]) -> Vec<Delta> {
        let mut deltas = Vec::new();
        for family in families {
            let name = family.name();
            if name.starts_with(SKIPPED_PREFIX) {
                continue;
            }
            for metric in family.get_metric() {
                let Some(total) = total(family.get_field_type(), metric) else {
                    continue;
                };
                let labels: Labels = metric
                    .get_label()
                    .iter()
                    .map(|pair| (pair.name().to_owned(), pair.value().to_owned()))
                    .collect();
                let previous = self
                    .previous
                    .insert((name.to_owned(), labels.clone()), total);
                if let Some((unit, value)) = change(name, total, previous) {
                    deltas.push(Delta {
                        name: name.to_owned(),
                        labels,
                        unit,
                        value,
                    });
                }
            }
        }
        deltas
    }
}

/// The current age of each [`AGE_GAUGES`] series that has been set (a zero gauge has never
/// seen its event, and says nothing an alarm could use).
fn ages(families: &[MetricFamily], timestamp_ms: u64) -> Vec<Delta> {
    let now = timestamp_ms as f64 / 1000.0;
    let mut ages = Vec::new();
    for family in families {
        let Some((_, age_name)) = AGE_GAUGES.iter().find(|(name, _)| *name == family.name()) else {
            continue;
        };
        if family.get_field_type() != MetricType::GAUGE {
            continue;
        }
        for metric in family.get_metric() {
            let since = metric.get_gauge().get_value();
            if since <= 0.0 {
                continue;
            }
            ages.push(Delta {
                name: (*age_name).to_owned(),
                labels: metric
                    .get_label()
                    .iter()
                    .map(|pair| (pair.name().to_owned(), pair.value().to_owned()))
                    .collect(),
                unit: "Seconds",
                value: number((now - since).max(0.0)),
            });
        }
    }
    ages
}

fn total(kind: MetricType, metric: &Metric) -> Option<Total> {
    match kind {
        MetricType::COUNTER => Some(Total::Counter(metric.get_counter().get_value())),
        MetricType::HISTOGRAM => {
            let histogram = metric.get_histogram();
            Some(Total::Histogram {
                count: histogram.get_sample_count(),
                sum: histogram.get_sample_sum(),
            })
        }
        _ => None,
    }
}

/// The unit and EMF value of the change from `previous` to `now`; `None` when nothing changed.
/// A total below the previous one means the series restarted, so all of it is new.
fn change(name: &str, now: Total, previous: Option<Total>) -> Option<(&'static str, Value)> {
    match (now, previous) {
        (Total::Counter(now), previous) => {
            let before = match previous {
                Some(Total::Counter(before)) if before <= now => before,
                _ => 0.0,
            };
            let delta = now - before;
            (delta > 0.0).then(|| ("Count", number(delta)))
        }
        (Total::Histogram { count, sum }, previous) => {
            let (count_before, sum_before) = match previous {
                Some(Total::Histogram { count: c, sum: s }) if c <= count => (c, s),
                _ => (0, 0.0),
            };
            let observations = count - count_before;
            if observations == 0 {
                return None;
            }
            let mean = (sum - sum_before) / observations as f64;
            let value = match observations {
                1 => number(mean),
                n => Value::Array(vec![number(mean); (n as usize).min(MAX_VALUES)]),
            };
            Some((unit_of(name), value))
        }
    }
}

/// The CloudWatch unit a histogram's name promises (Prometheus names end with their unit).
fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "Seconds"
    } else if name.ends_with("_bytes") {
        "Bytes"
    } else {
        "None"
    }
}

/// Whole numbers as JSON integers (`1`, not `1.0`); anything else as a float.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// The series that share one line: their dimension values agree.
struct Document {
    dimensions: Labels,
    metrics: Vec<Delta>,
}

impl Document {
    fn accepts(&self, delta: &Delta) -> bool {
        delta
            .labels
            .iter()
            .all(|(name, value)| self.dimensions.get(name).is_none_or(|v| v == value))
            && self.metrics.iter().all(|m| m.name != delta.name)
    }

    fn render(self, namespace: &str, timestamp_ms: u64) -> Value {
        let mut root = Map::new();
        for (name, value) in self.dimensions {
            root.insert(name, Value::String(value));
        }
        // One directive per set of label names: its dimension set is environment + those labels.
        let mut directives: BTreeMap<Vec<String>, Vec<Value>> = BTreeMap::new();
        for metric in self.metrics {
            let mut dimension_set = vec![ENVIRONMENT_DIMENSION.to_owned()];
            dimension_set.extend(metric.labels.into_keys());
            directives
                .entry(dimension_set)
                .or_default()
                .push(json!({ "Name": metric.name, "Unit": metric.unit }));
            root.insert(metric.name, metric.value);
        }
        let directives: Vec<Value> = directives
            .into_iter()
            .map(|(dimension_set, metrics)| {
                json!({ "Namespace": namespace, "Dimensions": [dimension_set], "Metrics": metrics })
            })
            .collect();
        root.insert(
            "_aws".to_owned(),
            json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
        );
        Value::Object(root)
    }
}

/// Packs deltas into as few documents as their dimension values allow.
fn group(deltas: Vec<Delta>, environment: &str) -> Vec<Document> {
    let mut documents: Vec<Document> = Vec::new();
    for delta in deltas {
        let index = match documents.iter().position(|d| d.accepts(&delta)) {
            Some(index) => index,
            None => {
                let dimensions =
                    Labels::from([(ENVIRONMENT_DIMENSION.to_owned(), environment.to_owned())]);
                documents.push(Document {
                    dimensions,
                    metrics: Vec::new(),
                });
                documents.len() - 1
            }
        };
        let document = &mut documents[index];
        for (name, value) in &delta.labels {
            document.dimensions.insert(name.clone(), value.clone());
        }
        document.metrics.push(delta);
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Target};

    const TIMESTAMP: u64 = 1_700_000_000_123;

    fn request(metrics: &Metrics, method: &str, route: &str, status: &str, seconds: f64) {
        metrics
            .http_requests
            .with_label_values(&[method, route, status])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    fn exporter() -> EmfExporter {
        EmfExporter::new(NAMESPACE, "preview-42")
    }

    fn directive_for<'a>(line: &'a Value, metric: &str) -> &'a Value {
        line["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives")
            .iter()
            .find(|d| {
                d["Metrics"]
                    .as_array()
                    .expect("metrics")
                    .iter()
                    .any(|m| m["Name"] == metric)
            })
            .unwrap_or_else(|| panic!("no directive for {metric} in {line}"))
    }

    #[test]
    fn one_request_is_one_line_with_route_method_and_status_dimensions() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        request(&metrics, "GET", "/orders/{id}", "404", 0.004);

        let lines = emf.flush(metrics.registry(), TIMESTAMP);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["_aws"]["Timestamp"], TIMESTAMP);
        assert_eq!(line["environment"], "preview-42");
        assert_eq!(line["route"], "/orders/{id}");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], "404");
        assert_eq!(line["http_requests_total"], 1);
        assert_eq!(line["http_request_duration_seconds"], 0.004);

        let requests = directive_for(line, "http_requests_total");
        assert_eq!(requests["Namespace"], NAMESPACE);
        assert_eq!(
            requests["Dimensions"],
            json!([["environment", "method", "route", "status"]])
        );
        assert_eq!(requests["Metrics"][0]["Unit"], "Count");
        let latency = directive_for(line, "http_request_duration_seconds");
        assert_eq!(
            latency["Dimensions"],
            json!([["environment", "method", "route"]])
        );
        assert_eq!(latency["Metrics"][0]["Unit"], "Seconds");
    }

    #[test]
    fn second_flush_holds_only_what_happened_since_the_first() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        request(&metrics, "GET", "/orders", "200", 0.002);
        assert_eq!(emf.flush(metrics.registry(), TIMESTAMP).len(), 1);

        assert!(
            emf.flush(metrics.registry(), TIMESTAMP).is_empty(),
            "nothing happened, so nothing is written"
        );

        request(&metrics, "GET", "/orders", "200", 0.006);
        metrics.orders_created.inc();
        let lines = emf.flush(metrics.registry(), TIMESTAMP + 1);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["http_requests_total"], 1);
        assert_eq!(lines[0]["http_request_duration_seconds"], 0.006);
        assert_eq!(lines[0]["orders_created_total"], 1);
        assert_eq!(
            directive_for(&lines[0], "orders_created_total")["Dimensions"],
            json!([["environment"]])
        );
    }

    #[test]
    fn disagreeing_label_values_go_to_separate_lines() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        request(&metrics, "GET", "/orders", "200", 0.001);
        request(&metrics, "POST", "/orders", "201", 0.003);
        let lines = emf.flush(metrics.registry(), TIMESTAMP);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let methods: Vec<&Value> = lines.iter().map(|l| &l["method"]).collect();
        assert!(methods.contains(&&json!("GET")) && methods.contains(&&json!("POST")));
    }

    #[test]
    fn several_observations_keep_count_and_sum_exact() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        for seconds in [0.001, 0.002, 0.006] {
            request(&metrics, "GET", "/health", "200", seconds);
        }
        let lines = emf.flush(metrics.registry(), TIMESTAMP);
        assert_eq!(lines[0]["http_requests_total"], 3);
        let values = lines[0]["http_request_duration_seconds"]
            .as_array()
            .expect("an array for several observations");
        assert_eq!(values.len(), 3);
        let sum: f64 = values.iter().filter_map(Value::as_f64).sum();
        assert!((sum - 0.009).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn other_gauges_and_an_unset_secret_age_are_left_out() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        metrics.http_requests_in_flight.set(3);
        assert!(emf.flush(metrics.registry(), TIMESTAMP).is_empty());
    }

    #[test]
    fn every_flush_carries_the_age_of_the_secret_for_an_alarm() {
        let metrics = Metrics::new(Target::Lambda).expect("metrics");
        let mut emf = exporter();
        let fetched = (TIMESTAMP / 1000 - 90) as f64;
        metrics.secrets_last_success.set(fetched);
        for later in [0, 60_000] {
            let lines = emf.flush(metrics.registry(), TIMESTAMP + later);
            assert_eq!(lines.len(), 1, "{lines:?}");
            let age = lines[0]["secret_age_seconds"].as_f64().expect("age");
            assert!(
                (age - (90.123 + later as f64 / 1000.0)).abs() < 1e-6,
                "{age}"
            );
            let directive = directive_for(&lines[0], "secret_age_seconds");
            assert_eq!(directive["Dimensions"], json!([["environment"]]));
            let unit = directive["Metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .find(|m| m["Name"] == "secret_age_seconds")
                .map(|m| m["Unit"].clone());
            assert_eq!(unit, Some(json!("Seconds")));
        }
    }

    #[test]
    fn lambda_registers_no_process_collector() {
        let names = |target| -> Vec<String> {
            let metrics = Metrics::new(target).expect("metrics");
            metrics
                .registry()
                .gather()
                .iter()
                .map(|family| family.name().to_owned())
                .collect()
        };
        assert!(!names(Target::Lambda)
            .iter()
            .any(|n| n.starts_with("process_")));
        #[cfg(target_os = "linux")]
        assert!(names(Target::Container)
            .iter()
            .any(|n| n.starts_with("process_")));
    }
}
