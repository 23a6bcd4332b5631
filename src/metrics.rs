//! Prometheus metrics: one registry for the process, rendered at `GET /metrics` in the
//! OpenMetrics text format. Every layer counts its own events here; names follow Prometheus
//! conventions (`_total` counters, `_seconds` and `_bytes` base units).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub app: String,
    pub status: u16,
}

/// A request to the Open Inference Protocol (`/v2`) for one model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InferLabels {
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub backend: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<RequestLabels>,
    pub infer_requests: Family<InferLabels, Counter>,
    pub infer_request_duration: HistogramFamily<InferLabels>,
    pub inference_duration: HistogramFamily<ModelLabels>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub model_loads: Counter,
    pub model_load_failures: Counter,
    pub cache_bytes: Gauge<u64, AtomicU64>,
    pub cache_entries: Gauge<u64, AtomicU64>,
    pub instantiations: Counter,
    pub deadline_kills: Counter,
    pub memory_kills: Counter,
    pub traps: Counter,
    pub deploys: Counter,
    pub failed_deploys: Counter,
    pub fleet_converged: Gauge<u64, AtomicU64>,
    pub fleet_registry_reachable: Gauge<u64, AtomicU64>,
    pub fleet_pulls: Counter,
    pub fleet_pull_failures: Counter,
    /// Outbound connections components hold open now (connecting, or until their response is
    /// read or dropped), by app.
    pub outbound_connections: Family<AppLabels, Gauge>,
    /// Outbound requests refused because the request or its app held as many connections as
    /// it may, by app.
    pub outbound_refused: Family<AppLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgenn");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: HistogramFamily<RequestLabels> = Family::new_with_constructor(latency_histogram);
        let inference_duration: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        let metrics = Self {
            requests,
            request_duration,
            infer_requests: Family::default(),
            infer_request_duration: Family::new_with_constructor(latency_histogram),
            inference_duration,
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            model_loads: Counter::default(),
            model_load_failures: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            instantiations: Counter::default(),
            deadline_kills: Counter::default(),
            memory_kills: Counter::default(),
            traps: Counter::default(),
            deploys: Counter::default(),
            failed_deploys: Counter::default(),
            fleet_converged: Gauge::default(),
            fleet_registry_reachable: Gauge::default(),
            fleet_pulls: Counter::default(),
            fleet_pull_failures: Counter::default(),
            outbound_connections: Family::default(),
            outbound_refused: Family::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests served by apps, by app and status", metrics.requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Latency of app requests, by app and status",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "v2_infer_requests",
            "Open Inference Protocol inference requests, by model and status",
            metrics.infer_requests.clone(),
        );
        registry.register_with_unit(
            "v2_infer_request_duration",
            "Latency of Open Inference Protocol inference requests, by model and status",
            Unit::Seconds,
            metrics.infer_request_duration.clone(),
        );
        registry.register_with_unit(
            "inference_duration",
            "Latency of wasi-nn compute calls, by model and backend",
            Unit::Seconds,
            metrics.inference_duration.clone(),
        );
        registry.register("model_cache_hits", "Graph lookups served from the model cache", metrics.cache_hits.clone());
        registry.register(
            "model_cache_misses",
            "Graph lookups that had to load the model",
            metrics.cache_misses.clone(),
        );
        registry.register("model_loads", "Models loaded onto a backend", metrics.model_loads.clone());
        registry.register("model_load_failures", "Model loads that failed", metrics.model_load_failures.clone());
        registry.register_with_unit(
            "model_cache",
            "Memory held by loaded models (estimate)",
            Unit::Bytes,
            metrics.cache_bytes.clone(),
        );
        registry.register("model_cache_entries", "Loaded (model, backend) graphs", metrics.cache_entries.clone());
        registry.register(
            "guest_instantiations",
            "Guest instances created (one per request)",
            metrics.instantiations.clone(),
        );
        registry.register("guest_deadline_kills", "Guests stopped at their deadline", metrics.deadline_kills.clone());
        registry.register("guest_memory_kills", "Guests stopped at their memory limit", metrics.memory_kills.clone());
        registry.register("guest_traps", "Guests that trapped or exited without a response", metrics.traps.clone());
        registry.register("app_deploys", "Apps deployed or replaced", metrics.deploys.clone());
        registry.register("app_failed_deploys", "Deploys refused by validation", metrics.failed_deploys.clone());
        registry.register(
            "fleet_converged",
            "1 when the fleet's desired state is what the gateway serves",
            metrics.fleet_converged.clone(),
        );
        registry.register(
            "fleet_registry_reachable",
            "1 when the last fleet pass reached the registry for every reference (0: serving from the cache)",
            metrics.fleet_registry_reachable.clone(),
        );
        registry.register(
            "fleet_pulls",
            "Artifacts pulled from a registry into the fleet cache",
            metrics.fleet_pulls.clone(),
        );
        registry.register(
            "fleet_pull_failures",
            "Fleet references that could not be served at their digest (registry unreachable, digest mismatch, refused)",
            metrics.fleet_pull_failures.clone(),
        );
        registry.register(
            "outbound_connections",
            "Outbound HTTP connections components hold open, by app",
            metrics.outbound_connections.clone(),
        );
        registry.register(
            "outbound_refused",
            "Outbound HTTP requests refused at the connection limit of their request or app, by app",
            metrics.outbound_refused.clone(),
        );
        Self { registry, ..metrics }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_conventional_names() {
        let metrics = Metrics::new();
        metrics.requests.get_or_create(&RequestLabels { app: "classify".into(), status: 200 }).inc();
        metrics
            .inference_duration
            .get_or_create(&ModelLabels { model: "m".into(), backend: "ort".into() })
            .observe(0.01);
        metrics.cache_bytes.set(1024);
        let text = metrics.render();
        assert!(text.contains("edgenn_http_requests_total{app=\"classify\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("edgenn_inference_duration_seconds_count{model=\"m\",backend=\"ort\"} 1"), "{text}");
        assert!(text.contains("edgenn_model_cache_bytes 1024"), "{text}");
        assert!(text.contains("edgenn_guest_deadline_kills_total 0"), "{text}");
    }
}
