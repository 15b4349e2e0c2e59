//! The domain error: what went wrong, in a sentence fit for the user, apart from the causes
//! that go to the log.

use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Values the user typed are wrong; the form is shown again with each message next to
    /// its field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The thing asked for does not exist (or the user may not know it exists).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    Throttled(String),
    /// The server has too much of this work in hand right now; try again in a few seconds.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Invalid(vec![e])
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(StoreError::Sqlite(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
