//! `EgressLog`: what one session's proxy refused or could not reach, so a job can tell a refused
//! main document (the job fails) from refused subresources (they just do not load).

use std::sync::{Arc, Mutex, PoisonError};

use url::Url;

use super::policy::Refusal;
use super::target::Target;
use crate::error::ScrapeError;

/// A request the proxy did not carry, keyed by the `host:port` it asked for.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub target: String,
    pub kind: BlockedKind,
}

#[derive(Debug, Clone)]
pub enum BlockedKind {
    /// The policy refused it.
    Refused(Refusal),
    /// Allowed, but resolving or connecting failed.
    Unreachable(String),
}

impl Blocked {
    pub fn new(target: String, kind: BlockedKind) -> Self {
        Self { target, kind }
    }

    pub fn is_refusal(&self) -> bool {
        matches!(self.kind, BlockedKind::Refused(_))
    }

    pub fn into_error(self) -> ScrapeError {
        match self.kind {
            BlockedKind::Refused(refusal) => ScrapeError::Refused(refusal.to_string()),
            BlockedKind::Unreachable(reason) => {
                ScrapeError::Unreachable(format!("{}: {reason}", self.target))
            }
        }
    }
}

/// Shared by a proxy and its session; cleared at the start of every job.
#[derive(Debug, Clone, Default)]
pub struct EgressLog {
    entries: Arc<Mutex<Vec<Blocked>>>,
}

/// Entries kept per job: a page with thousands of refused images must not grow memory without bound.
const MAX_ENTRIES: usize = 1000;

impl EgressLog {
    pub fn record(&self, blocked: Blocked) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() < MAX_ENTRIES {
            entries.push(blocked);
        }
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn snapshot(&self) -> Vec<Blocked> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the main document did not load, if the proxy knows: the entry for the document's own
    /// `host:port` when the browser shows a document, else (`None`: an error page) the last
    /// refusal, else the last unreachable destination.
    pub fn document_failure(&self, document: Option<&Url>) -> Option<ScrapeError> {
        let entries = self.snapshot();
        let found = match document {
            // A document without a network origin (file://, about:blank) was never the proxy's.
            Some(document) => {
                let key = Target::from_url(document)?.key();
                entries.into_iter().rev().find(|entry| entry.target == key)
            }
            None => {
                let last_refusal = entries.iter().rev().find(|entry| entry.is_refusal()).cloned();
                last_refusal.or_else(|| entries.into_iter().next_back())
            }
        };
        found.map(Blocked::into_error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::egress::{EgressPolicy, Reason};
    use crate::settings::EgressSettings;

    fn refused(target: &str) -> Blocked {
        let refusal = EgressPolicy::new(&EgressSettings::default())
            .check_addr("127.0.0.2".parse().unwrap(), 80)
            .unwrap_err();
        assert_eq!(refusal.reason, Reason::Loopback);
        Blocked::new(target.to_owned(), BlockedKind::Refused(refusal))
    }

    #[test]
    fn only_the_documents_own_destination_fails_the_job() {
        let log = EgressLog::default();
        log.record(refused("127.0.0.2:80"));
        let page = Url::parse("http://127.0.0.1:8000/quiz.html").unwrap();
        assert!(
            log.document_failure(Some(&page)).is_none(),
            "a refused image does not fail the page"
        );
        let redirected = Url::parse("http://127.0.0.2/").unwrap();
        assert!(matches!(
            log.document_failure(Some(&redirected)),
            Some(ScrapeError::Refused(_))
        ));
        let file = Url::parse("file:///tmp/raw.html").unwrap();
        assert!(log.document_failure(Some(&file)).is_none());
        assert!(matches!(
            log.document_failure(None),
            Some(ScrapeError::Refused(_))
        ));
        log.clear();
        assert!(log.document_failure(None).is_none());
    }
}
