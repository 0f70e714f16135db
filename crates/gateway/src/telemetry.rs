//! Traces across protocols: the `[tracing]` section, the OTLP/HTTP exporter, and the bus hook that records a span
//! when a message enters gatewayd and one for each delivery, in the trace its W3C `traceparent` names. A message
//! that came without one starts a new trace (recorded for `sample_ratio` of them); the ingress span becomes the
//! message's `traceparent`, so deliveries on every node, and the clients that read the header, join its trace.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use core_bus::trace::TraceHook;
use core_bus::{
    Envelope, Protocol, TRACEPARENT_HEADER as TRACEPARENT, TRACESTATE_HEADER as TRACESTATE,
};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use protocols::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[tracing]`: off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP (protobuf) endpoint of a collector, e.g. `http://otel-collector:4318` (`/v1/traces` is added when
    /// the URL has no path) or the full traces URL.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces (messages that came without a `traceparent`) that are recorded, 0.0 to 1.0. A message
    /// that came with one follows its sampled flag.
    pub sample_ratio: f64,
    /// How often finished spans are sent.
    pub export_interval_ms: u64,
    /// `service.name` of the spans.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            export_interval_ms: 5000,
            service_name: "gatewayd".into(),
        }
    }
}

impl TracingConfig {
    /// Checks what serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::new(
                "tracing.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.export_interval_ms == 0 {
            return Err(ConfigError::new(
                "tracing.export_interval_ms",
                "must be at least 1",
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            traces_url(endpoint)
                .map_err(|error| ConfigError::new("tracing.otlp_endpoint", error))?;
        }
        Ok(())
    }
}

/// The traces URL for `endpoint`: as given when it has a path, else with `/v1/traces`.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|error| format!("{endpoint:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{endpoint:?}: not an http(s) URL"));
    }
    Ok(match url.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// The running exporter; [`Telemetry::shutdown`] sends what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the exporter when `config` names an endpoint, and returns the bus hook that records the spans.
    /// Call it outside the async runtime: the HTTP client it builds blocks.
    pub fn start(
        config: &TracingConfig,
    ) -> anyhow::Result<Option<(Telemetry, Arc<dyn TraceHook>)>> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint).map_err(anyhow::Error::msg)?)
            .with_timeout(Duration::from_secs(10))
            .with_http_client(reqwest::blocking::Client::new())
            .build()?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.export_interval_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let hook = Hook {
            tracer: provider.tracer("gatewayd"),
            propagator: TraceContextPropagator::new(),
        };
        Ok(Some((Telemetry { provider }, Arc::new(hook))))
    }

    /// Sends the spans still buffered and stops the exporter. Call it outside the async runtime.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "tracing: could not send the last spans");
        }
    }
}

struct Hook {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// The envelope's trace context, as the propagator reads it.
struct Carried<'a>(&'a Envelope);

impl Extractor for Carried<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.0.traceparent.as_deref(),
            TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Where the propagator writes a span's trace context.
#[derive(Default)]
struct Written {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
}

impl Hook {
    fn parent(&self, envelope: &Envelope) -> Context {
        self.propagator.extract(&Carried(envelope))
    }

    fn attributes(protocol: Protocol, envelope: &Envelope) -> Vec<KeyValue> {
        vec![
            KeyValue::new("messaging.system", protocol.as_str()),
            KeyValue::new(
                "messaging.destination.name",
                envelope.topic.as_str().to_owned(),
            ),
            KeyValue::new("messaging.message.id", envelope.id.to_string()),
            KeyValue::new("messaging.message.body.size", envelope.payload.len() as i64),
        ]
    }
}

impl TraceHook for Hook {
    fn published(&self, envelope: &mut Envelope) {
        let parent = self.parent(envelope);
        let mut span = self
            .tracer
            .span_builder(format!("publish {}", envelope.origin.protocol.as_str()))
            .with_kind(SpanKind::Producer)
            .with_attributes(Self::attributes(envelope.origin.protocol, envelope))
            .start_with_context(&self.tracer, &parent);
        let mut written = Written::default();
        let context = Context::new().with_remote_span_context(span.span_context().clone());
        self.propagator.inject_context(&context, &mut written);
        if written.traceparent.is_some() {
            envelope.traceparent = written.traceparent;
            envelope.tracestate = written.tracestate;
        }
        span.end();
    }

    fn delivered(&self, subscriber: Protocol, envelope: &Envelope) {
        let parent = self.parent(envelope);
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let entered = UNIX_EPOCH + Duration::from_millis(envelope.timestamp_ms);
        let mut span = self
            .tracer
            .span_builder(format!("deliver {}", subscriber.as_str()))
            .with_kind(SpanKind::Consumer)
            .with_start_time(entered)
            .with_attributes(Self::attributes(subscriber, envelope))
            .start_with_context(&self.tracer, &parent);
        span.end();
    }

    fn forwarded(&self, envelope: &Envelope) {
        self.hop("cluster forward", SpanKind::Producer, envelope);
    }

    fn arrived(&self, envelope: &Envelope) {
        self.hop("cluster receive", SpanKind::Consumer, envelope);
    }
}

impl Hook {
    /// A span of the cluster hop, under the message's span; the message keeps its `traceparent`, so its
    /// deliveries on the other node are children of its publish span.
    fn hop(&self, name: &'static str, kind: SpanKind, envelope: &Envelope) {
        let parent = self.parent(envelope);
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(Self::attributes(envelope.origin.protocol, envelope))
            .start_with_context(&self.tracer, &parent);
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_without_a_path_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318").as_deref(),
            Ok("http://collector:4318/v1/traces")
        );
        assert_eq!(
            traces_url("http://collector:4318/").as_deref(),
            Ok("http://collector:4318/v1/traces")
        );
        assert_eq!(
            traces_url("https://c/otlp/v1/traces").as_deref(),
            Ok("https://c/otlp/v1/traces")
        );
        assert!(traces_url("grpc://c:4317").is_err());
        assert!(traces_url("not a url").is_err());
    }
}
