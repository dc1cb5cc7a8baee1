//! How a handler fails: any error is a failed attempt (retried while attempts remain), a
//! [`Permanent`] one sends the task straight to `dead`.

pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A failure that another attempt cannot fix (the input is gone or unreadable): the task goes
/// straight to `dead` instead of retrying.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Boxes a [`Permanent`] failure.
pub fn permanent(message: impl Into<String>) -> HandlerError {
    Box::new(Permanent(message.into()))
}
