//! Outbound HTTP from components: `wasi:http/outgoing-handler` reaches only the origins the
//! app's manifest lists, in Spin's form (`allowed_outbound_hosts`):
//!
//! ```toml
//! allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*", "https://*.example.org"]
//! ```
//!
//! A scheme (`http`, `https` or `*`), a host (exact, `*`, or `*.suffix` for any subdomain) and
//! an optional port (a number or `*`; left out, the scheme's default). The default is no
//! origin at all. A request to anything else fails with wasi-http's `HTTP-request-denied`
//! before a connection is attempted, and is logged.
//!
//! An allowed request still runs under the app's limits: its connect, first-byte and
//! between-bytes timeouts are cut to the time left before the deadline, and a response body
//! larger than the app's memory limit fails with `HTTP-response-body-size`.
//!
//! HTTPS is verified against the machine's trust store ([`TlsRoots`]), not only the public
//! CAs: an app at the edge often calls a service of its own operator, signed by a private CA.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// At most this many origins per app.
pub const MAX_ORIGINS: usize = 64;

/// Outbound connections one request may hold open at once (connecting, waiting for an
/// answer, or until its response is read or dropped). Each is a socket of the gateway's: an
/// app allowed one origin could otherwise open them until the process runs out of file
/// descriptors. Cloudflare Workers allows 6 open at once per request; Fastly caps backend
/// requests per execution too.
pub const MAX_CONNECTIONS_PER_REQUEST: usize = 8;

/// Outbound connections all of one app's requests may hold open at once.
pub const MAX_CONNECTIONS_PER_APP: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemePattern {
    Http,
    Https,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.org`: any subdomain of it (not the domain itself).
    Subdomain(String),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Default,
    Exact(u16),
    Any,
}

/// One entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

impl AllowedOrigin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("allowed outbound host {text:?} {why} (e.g. \"https://api.example.com\")");
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("needs a scheme"))?;
        let scheme = match scheme {
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            "*" => SchemePattern::Any,
            _ => return Err(bad("must use http, https or *")),
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad("must be scheme://host[:port], with no path or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]:8080`: the colon before the port follows the bracket.
            Some((host, port)) if !host.starts_with('[') || host.ends_with(']') => (host, Some(port)),
            _ => (rest, None),
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(port) => PortPattern::Exact(port.parse().map_err(|_| bad("has a port that is not a number"))?),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Subdomain(suffix.to_string())
        } else {
            HostPattern::Exact(host)
        };
        match &host {
            HostPattern::Exact(h) | HostPattern::Subdomain(h) if !is_host(h) => Err(bad("has an invalid host")),
            _ => Ok(Self { scheme, host, port }),
        }
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let scheme_ok = match self.scheme {
            SchemePattern::Http => scheme == "http",
            SchemePattern::Https => scheme == "https",
            SchemePattern::Any => true,
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Exact(h) => *h == host,
            HostPattern::Subdomain(suffix) => {
                host.strip_suffix(suffix.as_str()).is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
            HostPattern::Any => true,
        };
        let port_ok = match self.port {
            PortPattern::Default => port == default_port,
            PortPattern::Exact(p) => port == p,
            PortPattern::Any => true,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// A DNS name or an IP literal (IPv6 in brackets).
fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// One request's outbound HTTP: what it may reach, and until when.
pub struct OutboundPolicy {
    pub app: String,
    pub allowed: Arc<[AllowedOrigin]>,
    pub deadline: Instant,
    /// The largest response body a guest may receive: its memory limit.
    pub max_body_bytes: usize,
    pub tls: TlsRoots,
    /// Connections open now: this request's, and its app's (shared by all its requests).
    pub open: OpenConnections,
}

/// The outbound connections open now, for one request and for its app, each held to its
/// limit ([`MAX_CONNECTIONS_PER_REQUEST`], [`MAX_CONNECTIONS_PER_APP`]). The app's count is
/// its `edgenn_outbound_connections` gauge: one count, shown as it is enforced, and kept
/// across the app's redeploys.
#[derive(Clone)]
pub struct OpenConnections {
    request: Arc<AtomicUsize>,
    app: Gauge,
    refused: Counter,
}

impl OpenConnections {
    /// The counts of a new request of an app with the gauge `app` and refusal counter `refused`.
    pub fn for_request(app: Gauge, refused: Counter) -> Self {
        OpenConnections { request: Arc::new(AtomicUsize::new(0)), app, refused }
    }

    /// A place for one more connection, if the request and its app are both under their
    /// limits; it is given back when the [`ConnectionSlot`] is dropped.
    fn take(&self) -> Option<ConnectionSlot> {
        let request_under = self
            .request
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_CONNECTIONS_PER_REQUEST).then_some(n + 1))
            .is_ok();
        if !request_under {
            self.refused.inc();
            return None;
        }
        // Counted first and checked against the count before it: racing requests may each be
        // refused, but the app never holds more than its limit.
        if self.app.inc() >= MAX_CONNECTIONS_PER_APP as i64 {
            self.app.dec();
            self.request.fetch_sub(1, Ordering::AcqRel);
            self.refused.inc();
            return None;
        }
        Some(ConnectionSlot(self.clone()))
    }
}

/// One outbound connection counted open, from before it connects until its response is done
/// with (or the request's run is dropped).
struct ConnectionSlot(OpenConnections);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.request.fetch_sub(1, Ordering::AcqRel);
        self.0.app.dec();
    }
}

/// The certificate authorities HTTPS requests are verified against, read once per gateway:
/// the machine's trust store, as `edgenn push` reads it (`SSL_CERT_FILE`, `SSL_CERT_DIR`, or
/// the system's bundle), so trusting an operator's private CA is the system's usual setting;
/// the Mozilla roots bundled with the gateway where the machine has none.
#[derive(Clone)]
pub struct TlsRoots(Arc<rustls::ClientConfig>);

impl TlsRoots {
    pub fn from_machine() -> Self {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a certificate of the machine's trust store could not be read");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("the machine's trust store holds no certificates: outbound HTTPS trusts Mozilla's roots");
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Self::with_roots(roots)
    }

    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        // The provider named here, not a process-wide default another crate may or may not
        // have installed.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsRoots(Arc::new(config))
    }
}

/// How long after the deadline an outbound timeout the deadline cuts would fire: never, as the
/// run is dropped at the deadline; it only keeps a timer from outliving a run that is not.
const PAST_DEADLINE: Duration = Duration::from_secs(1);

impl OutboundPolicy {
    fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else { return false };
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed.iter().any(|origin| origin.allows(scheme, host, port))
    }

    /// The request's timeouts. One the guest asks for that ends before the deadline is kept; a
    /// longer one (or none) ends [`PAST_DEADLINE`] after it, so that it is the app's deadline,
    /// not a timeout, that ends the wait: the run is dropped at the deadline with a 504
    /// `deadline_exceeded`, the same answer whether the upstream says nothing or trickles.
    fn bounded(&self, options: Option<RequestOptions>) -> RequestOptions {
        let left = self.deadline.saturating_duration_since(Instant::now()) + PAST_DEADLINE;
        let cut = |timeout: Option<Duration>| Some(timeout.map_or(left, |t| t.min(left)));
        let options = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: cut(options.connect_timeout),
            first_byte_timeout: cut(options.first_byte_timeout),
            between_bytes_timeout: cut(options.between_bytes_timeout),
        }
    }
}

/// What drives an outbound connection until its response is read.
type ConnectionFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, ConnectionFuture), wasmtime_wasi_http::Error>> + Send>;

/// Sends an HTTPS request, verified against `tls`, under `options`' timeouts (all set by
/// [`OutboundPolicy::bounded`]). wasmtime's own sender trusts only the bundled public roots.
async fn send_https(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    tls: TlsRoots,
) -> Result<(http::Response<WasiBody>, ConnectionFuture), wasmtime_wasi_http::Error> {
    use wasmtime_wasi_http::Error;
    let within = |limit: Option<Duration>| limit.unwrap_or(Duration::ZERO);
    let (connect, first_byte, between_bytes) =
        (within(options.connect_timeout), within(options.first_byte_timeout), within(options.between_bytes_timeout));
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?;
    // One limit for the whole of connecting: TCP, the TLS handshake and HTTP's.
    let connecting = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(Error::Connect)?;
        let stream = tokio_rustls::TlsConnector::from(tls.0).connect(name, stream).await.map_err(tls_error)?;
        let io = wasmtime_wasi_http::io::TokioIo::new(stream);
        Ok::<_, Error>(hyper::client::conn::http1::handshake(io).await?)
    };
    let (mut sender, connection) =
        tokio::time::timeout(connect, connecting).await.map_err(|_| Error::ConnectionTimeout)??;
    // The connection runs as its own task until the response has been read or dropped (it
    // ends with the guest's store at the latest).
    let connection = tokio::spawn(connection);
    // The origin is in the connection (and the Host header, which wasi-http sets); the
    // request line carries the path.
    *request.uri_mut() = uri.path_and_query().map_or_else(|| "/".parse(), |p| p.as_str().parse()).expect("a path");
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| IdleTimeout::new(body, between_bytes).boxed_unsync());
    let connection: ConnectionFuture = Box::new(async move {
        match connection.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::InternalError(Some("the outbound connection's task ended abnormally".into()))),
        }
    });
    Ok((response, connection))
}

/// The wasi-http error for a failed TLS handshake: a certificate the trust store does not
/// vouch for (for this name) is `TLS-certificate-error`.
fn tls_error(error: std::io::Error) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error;
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => {
            Error::TlsAlertReceived { alert_id: Some(u8::from(*alert)), alert_message: Some(format!("{alert:?}")) }
        }
        _ => Error::Tls(error),
    }
}

/// A response body that fails with `connection-read-timeout` when no bytes come for `idle`.
struct IdleTimeout {
    body: Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(body: Incoming, idle: Duration) -> Self {
        IdleTimeout { body, idle, timer: Box::pin(tokio::time::sleep(idle)) }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(wasmtime_wasi_http::Error::from)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        if !self.allows(request.uri()) {
            // The guest sees the error; the operator sees which app tried what.
            tracing::warn!(app = %self.app, uri = %request.uri(), "outbound request denied: origin not in allowed_outbound_hosts");
            return Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) });
        }
        let Some(slot) = self.open.take() else {
            tracing::debug!(app = %self.app, "outbound request refused: at the connection limit");
            return Box::new(async { Err(ErrorCode::ConnectionLimitReached.into()) });
        };
        let options = self.bounded(options);
        let limit = self.max_body_bytes;
        let tls = self.tls.clone();
        Box::new(async move {
            let (response, io) = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                send_https(request, options, tls).await?
            } else {
                let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                (response.map(|body| body.boxed_unsync()), Box::new(io) as ConnectionFuture)
            };
            // The connection counts as open until the future that drives it ends or is dropped
            // (the response read or dropped, or the run over).
            let io: ConnectionFuture = Box::new(async move {
                let _slot = slot;
                Pin::from(io).await
            });
            let response = response.map(move |body| {
                http_body_util::Limited::new(body, limit)
                    .map_err(move |error| match error.downcast::<wasmtime_wasi_http::Error>() {
                        Ok(error) => *error,
                        Err(_) => ErrorCode::HttpResponseBodySize(Some(limit as u64)).into(),
                    })
                    .boxed_unsync()
            });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str], uri: &str) -> bool {
        let allowed: Vec<_> = entries.iter().map(|e| AllowedOrigin::parse(e).unwrap()).collect();
        let policy = OutboundPolicy {
            app: "t".into(),
            allowed: allowed.into(),
            deadline: Instant::now(),
            max_body_bytes: 1,
            tls: TlsRoots::with_roots(rustls::RootCertStore::empty()),
            open: OpenConnections::for_request(Gauge::default(), Counter::default()),
        };
        policy.allows(&uri.parse().unwrap())
    }

    #[test]
    fn origins_match_like_spin() {
        assert!(allowed(&["https://api.example.com"], "https://api.example.com/v1?q=1"));
        assert!(allowed(&["https://api.example.com"], "https://API.example.com:443/"));
        assert!(!allowed(&["https://api.example.com"], "http://api.example.com/"), "scheme");
        assert!(!allowed(&["https://api.example.com"], "https://api.example.com:8443/"), "default port only");
        assert!(!allowed(&["https://api.example.com"], "https://api.example.com.evil.net/"));
        assert!(allowed(&["http://127.0.0.1:*"], "http://127.0.0.1:39001/x"));
        assert!(!allowed(&["http://127.0.0.1:*"], "http://127.0.0.2:39001/x"));
        assert!(allowed(&["http://127.0.0.1:8080"], "http://127.0.0.1:8080/"));
        assert!(!allowed(&["http://127.0.0.1:8080"], "http://127.0.0.1:8081/"));
        assert!(allowed(&["https://*.example.org"], "https://a.b.example.org/"));
        assert!(!allowed(&["https://*.example.org"], "https://example.org/"));
        assert!(!allowed(&["https://*.example.org"], "https://badexample.org/"));
        assert!(allowed(&["*://*:*"], "http://anything:1/"));
        assert!(allowed(&["http://[::1]:*"], "http://[::1]:9000/"));
        assert!(!allowed(&[], "http://127.0.0.1/"), "nothing by default");
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://user@x",
            "https://x:port",
            "https://x:99999",
            "https://bad host",
            "https://[nope]:1",
        ] {
            assert!(AllowedOrigin::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn timeouts_never_pass_the_deadline() {
        let policy = OutboundPolicy {
            app: "t".into(),
            allowed: Arc::from(Vec::new()),
            deadline: Instant::now() + Duration::from_secs(2),
            max_body_bytes: 1,
            tls: TlsRoots::with_roots(rustls::RootCertStore::empty()),
            open: OpenConnections::for_request(Gauge::default(), Counter::default()),
        };
        let long = Some(Duration::from_secs(600));
        let options = policy.bounded(Some(RequestOptions {
            connect_timeout: long,
            first_byte_timeout: None,
            between_bytes_timeout: Some(Duration::from_millis(5)),
        }));
        // Cut to just after the deadline, so that the deadline, not a timeout, ends the wait.
        for cut in [options.connect_timeout, options.first_byte_timeout] {
            let cut = cut.unwrap();
            assert!(cut > Duration::from_secs(2) && cut <= Duration::from_secs(2) + PAST_DEADLINE, "{cut:?}");
        }
        // One that ends before the deadline is the guest's own.
        assert_eq!(options.between_bytes_timeout, Some(Duration::from_millis(5)));
    }

    #[test]
    fn connections_are_counted_per_request_and_per_app_and_given_back() {
        let app = Gauge::default();
        let refused = Counter::default();
        let first = OpenConnections::for_request(app.clone(), refused.clone());
        let mut held: Vec<_> =
            (0..MAX_CONNECTIONS_PER_REQUEST).map(|_| first.take().expect("under the limit")).collect();
        assert!(first.take().is_none(), "one request over its limit");
        assert_eq!((app.get(), refused.get()), (MAX_CONNECTIONS_PER_REQUEST as i64, 1));
        held.pop();
        held.push(first.take().expect("a slot given back is taken again"));
        assert_eq!(app.get(), MAX_CONNECTIONS_PER_REQUEST as i64);

        // Other requests of the app fill the app's limit; then even a fresh request is refused.
        let requests: Vec<_> =
            (0..MAX_CONNECTIONS_PER_APP).map(|_| OpenConnections::for_request(app.clone(), refused.clone())).collect();
        let mut slots = Vec::new();
        for request in &requests {
            match request.take() {
                Some(slot) => slots.push(slot),
                None => break,
            }
        }
        assert_eq!(app.get(), MAX_CONNECTIONS_PER_APP as i64);
        let fresh = OpenConnections::for_request(app.clone(), refused.clone());
        let refusals = refused.get();
        assert!(fresh.take().is_none(), "the app is at its limit");
        assert_eq!(app.get(), MAX_CONNECTIONS_PER_APP as i64, "a refusal leaves the count as it was");
        assert_eq!(refused.get(), refusals + 1, "and is counted");
        drop(slots);
        assert!(fresh.take().is_some());
    }
}
