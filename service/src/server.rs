//! The container's serving loop: API and metrics ports, and the shutdown sequence
//! (not ready → drain → stop accepting → finish in-flight → exit).
//!
//! Connections are served by hyper directly rather than `axum::serve`, for the limits a pod
//! reached without a load balancer in front needs: a header read timeout, a keep-alive idle
//! timeout longer than the load balancer's, and `Connection: close` while draining.

mod connection;
mod in_place;
mod socket;
mod unacknowledged;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ConnectionLimits;
use crate::state::{AppState, Readiness};
use crate::{metrics_router, router, App};

use connection::HeadTimer;
use in_place::InPlace;
use socket::{Activity, Watched};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves until SIGTERM or Ctrl-C, then shuts down gracefully. Returns once every
/// in-flight request finished, or the grace period ran out.
pub async fn serve(state: AppState) -> Result<(), ServeError> {
    let config = state.config.clone();
    let (stop, stopped) = watch::channel(false);

    let api = bind(config.host, config.port).await?;
    let api_addr = api.local_addr()?;
    let limits = config.connections;
    let readiness = Arc::clone(&state.readiness);
    let mut servers = vec![spawn(
        api,
        router(state.clone()),
        limits,
        Arc::clone(&readiness),
        stopped.clone(),
    )];
    let metrics_addr = match config.enable_metrics {
        true => {
            let listener = bind(config.host, config.metrics_port).await?;
            let addr = listener.local_addr()?;
            servers.push(spawn(
                listener,
                metrics_router(state.clone()),
                limits,
                readiness,
                stopped,
            ));
            Some(addr)
        }
        false => None,
    };
    tracing::info!(
        %api_addr,
        metrics_addr = metrics_addr.map(|a| a.to_string()),
        environment = %config.environment,
        "listening"
    );

    shutdown_signal().await;
    tracing::info!(drain_seconds = config.shutdown_drain.as_secs(), "draining");
    state.readiness.start_draining();
    tokio::time::sleep(config.shutdown_drain).await;

    tracing::info!("no longer accepting connections; finishing in-flight requests");
    let _ = stop.send(true);
    let finished = join_servers(servers);
    match tokio::time::timeout(config.shutdown_grace, finished).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("grace period over; stopping with requests in flight"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(host: IpAddr, port: u16) -> Result<TcpListener, ServeError> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

fn spawn<S>(
    listener: TcpListener,
    app: App<S>,
    limits: ConnectionLimits,
    readiness: Arc<Readiness>,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync,
    S: 'static,
    S::Future: Send,
{
    tokio::spawn(accept_loop(listener, app, limits, readiness, stopped))
}

/// Accepts until `stopped`, then closes the listener (new connections are refused) and waits
/// for every open connection to finish its request and close.
async fn accept_loop<S>(
    listener: TcpListener,
    app: App<S>,
    limits: ConnectionLimits,
    readiness: Arc<Readiness>,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync,
    S: 'static,
    S::Future: Send,
{
    // While draining, each answer closes its connection, so keep-alive clients reconnect
    // (to another pod, once the load balancer has noticed) rather than hold this one.
    let close_while_draining = move |mut response: Response| {
        if readiness.is_draining() {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    };
    let stop = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    tokio::pin!(stop);
    // At most `max_connections` open at once: beyond, the next is not accepted (it waits in
    // the kernel's listen backlog) until one closes, so idle and stalled clients cost a
    // bounded amount of memory.
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let serve = |stream: TcpStream, permit| {
        let _ = stream.set_nodelay(true);
        unacknowledged::give_up_after(&stream, limits.write_timeout);
        let activity = Arc::new(Activity::default());
        let (app, arrival) = app.on_connection();
        let app = tower::ServiceBuilder::new()
            .map_response(close_while_draining.clone())
            .service(app);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(HeadTimer::new(Arc::clone(&activity), limits))
            .header_read_timeout(limits.header_read_timeout)
            // Bounds the request head (431 above it); hyper's own default is about 400 KB.
            .max_buf_size(limits.max_request_head_bytes)
            // A client that closes its side after its request still gets the answer, and no
            // request is cut short because its client left: hyper does not read the socket
            // while an answer is being made. That read kept the request's bytes shared, so
            // every request took a fresh 8 KiB read buffer (bench/README.md). The request
            // timeout bounds the work either way.
            .half_close(true)
            .serve_connection(
                TokioIo::new(Watched::new(
                    stream,
                    Arc::clone(&activity),
                    arrival,
                    limits.write_timeout,
                )),
                InPlace::new(app),
            );
        tokio::spawn(finish(connection, activity, stopped.clone(), permit));
    };
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        serve(stream, permit);
    }
    // Clients in the listen backlog have completed their handshake and sent their request:
    // closing the listener now would reset them unanswered. Serve every one of them, then
    // close, so from then on the kernel refuses. Each waits for a connection slot.
    let listener = listener.into_std()?;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _peer)) => {
                // tokio needs it non-blocking; accept(2) does not pass that on from the listener.
                stream.set_nonblocking(true)?;
                TcpStream::from_std(stream)?
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => {
                pause_after_accept_error(error).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).acquire_owned().await else {
            break;
        };
        serve(stream, permit);
    }
    drop(listener);
    // Every connection holds a slot until it closes: all slots back means all finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
    Ok(())
}

/// Runs one connection to its end. Once the server stops, a connection that has answered
/// and now idles is closed; one that has not answered yet is left to read its request and
/// answer it (with `Connection: close`, as while draining), for the client connected while
/// the server still accepted and expects that answer. The header read timeout bounds a client
/// that sends nothing.
async fn finish<C>(
    connection: C,
    activity: Arc<Activity>,
    mut stopped: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    C: GracefulConnection<Error = hyper::Error> + Send,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { let _ = stopped.wait_for(|stop| *stop).await; } => {
            if activity.has_written() {
                connection.as_mut().graceful_shutdown();
            }
            connection.await
        }
    };
    // Timeouts and clients that hang up end here; neither is the server's failure.
    if let Err(error) = result {
        tracing::debug!(%error, "connection closed");
    }
    drop(permit);
}

/// Per-connection errors (the client reset before accept) are routine; anything else, such
/// as running out of file descriptors, gets a pause so the loop does not spin.
async fn pause_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; pausing for 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Waits for every server together: the first to fail ends the wait with its error.
async fn join_servers(servers: Vec<JoinHandle<std::io::Result<()>>>) -> std::io::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for server in servers {
        set.spawn(async move { server.await.map_err(std::io::Error::other)? });
    }
    while let Some(finished) = set.join_next().await {
        finished.map_err(std::io::Error::other)??;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot reach {0}: {1}")]
    Unreachable(SocketAddr, String),
    #[error("/health answered {0}")]
    Unhealthy(u16),
    #[error("no answer from /health within 3 seconds")]
    Timeout,
}

/// `order-service healthcheck`: GET /health on the local API port, for images without curl.
pub async fn healthcheck(port: u16) -> Result<(), HealthcheckError> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let check = async {
        let unreachable =
            |e: &dyn std::fmt::Display| HealthcheckError::Unreachable(addr, e.to_string());
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/health")
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(HealthcheckError::Unhealthy(status)),
        }
    };
    tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .unwrap_or(Err(HealthcheckError::Timeout))
}
