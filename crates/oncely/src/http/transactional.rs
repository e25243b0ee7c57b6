//! The server side with the handler's writes and the stored response in one commit.

use std::sync::Arc;

use parking_lot::Mutex;

use super::gate::{HttpGate, Screened, replayed};
use super::{HttpRequest, HttpResponse, Problem};
use crate::error::Error;
use crate::inbox::{Failure, ProcessError};
use crate::sql::{SqlTx, TransactionalStore};

/// Why a transactional handler's response was not stored: it was answered (and its writes
/// rolled back), or the handler failed without answering.
enum Unstored<E> {
    Answered(HttpResponse),
    Raised(E),
    Invalid(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for Unstored<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unstored::Answered(r) => write!(f, "answered {} (not stored)", r.status),
            Unstored::Raised(e) => e.fmt(f),
            Unstored::Invalid(e) => e.fmt(f),
        }
    }
}

impl<S: TransactionalStore> HttpGate<S> {
    /// Answers `req` with `handler` run inside one transaction of the store: exactly-once.
    ///
    /// What the handler writes through its transaction, the key's claim and the stored response
    /// commit together. A response the policy does not store (a 5xx, a "try again" status) rolls
    /// the handler's writes back and gives the key back; so does a handler that fails without
    /// answering (`Err(ProcessError::Handler)`, its error as it raised it). A retry of a stored
    /// response gets it replayed without running the handler; refusals are answered as
    /// [`HttpGate::admit`] answers them. A request the gate lets through (no key needed) runs the
    /// handler in a transaction of its own, committed when it answers.
    ///
    /// The handler runs while the store's transaction is open: database work only.
    pub async fn respond_in_transaction<F, E>(
        &self,
        req: &HttpRequest,
        handler: F,
    ) -> Result<HttpResponse, ProcessError<E>>
    where
        F: FnOnce(&mut dyn SqlTx) -> Result<HttpResponse, E> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let request = match self.screen(req)? {
            Screened::Pass => return self.pass_in_transaction(handler).await,
            Screened::Respond(response) => return Ok(response),
            Screened::Claim(request) => request,
        };
        let policy = self.policy.clone();
        let answered: Arc<Mutex<Option<HttpResponse>>> = Arc::new(Mutex::new(None));
        let slot = answered.clone();
        let outcome = self
            .inbox
            .process_in_transaction(request, move |tx| match handler(tx) {
                Ok(response) => {
                    response.check().map_err(|e| Failure::retryable(Unstored::Invalid(e)))?;
                    if policy.stores(response.status) && response.body.len() <= policy.max_response_bytes {
                        let kept = policy.kept(&response);
                        *slot.lock() = Some(response);
                        Ok(kept.encode())
                    } else {
                        Err(Failure::retryable(Unstored::Answered(response)))
                    }
                }
                Err(e) => Err(Failure::retryable(Unstored::Raised(e))),
            })
            .await;
        match outcome {
            Ok(done) if done.replayed => Ok(replayed(crate::inbox::Status::Succeeded, done.result)?),
            // The handler's own response, as it answered it (the stored form may keep fewer headers).
            Ok(done) => match answered.lock().take() {
                Some(response) => Ok(response),
                None => Ok(replayed(crate::inbox::Status::Succeeded, done.result)?),
            },
            Err(ProcessError::Handler(Unstored::Answered(response))) => Ok(response),
            Err(ProcessError::Handler(Unstored::Raised(e))) => Err(ProcessError::Handler(e)),
            Err(ProcessError::Handler(Unstored::Invalid(e))) => Err(e.into()),
            Err(ProcessError::ReplayedFailure(_)) => {
                Err(Error::CorruptStore("an HTTP key's record holds a stored failure".into()).into())
            }
            Err(ProcessError::Oncely(e)) => Ok(match e {
                Error::Conflict { .. } => Problem::KeyReused.response(),
                Error::InProgress { .. } => {
                    Problem::InProgress { retry_after: super::gate::IN_PROGRESS_RETRY }.response()
                }
                e if e.is_transient() => Problem::StoreUnavailable.response(),
                e => return Err(e.into()),
            }),
        }
    }

    async fn pass_in_transaction<F, E>(&self, handler: F) -> Result<HttpResponse, ProcessError<E>>
    where
        F: FnOnce(&mut dyn SqlTx) -> Result<HttpResponse, E> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let raised: Arc<Mutex<Option<E>>> = Arc::new(Mutex::new(None));
        let slot = raised.clone();
        let r = self
            .inbox
            .store()
            .in_transaction(move |tx| match handler(tx) {
                Ok(response) => Ok(response),
                Err(e) => {
                    let text = e.to_string();
                    *slot.lock() = Some(e);
                    Err(Error::Storage(format!("the handler failed: {text}")))
                }
            })
            .await;
        match (r, raised.lock().take()) {
            (_, Some(e)) => Err(ProcessError::Handler(e)),
            (r, None) => r.map_err(ProcessError::Oncely),
        }
    }
}
