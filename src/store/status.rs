//! The states a stored row can be in, one enum per table: the text the store writes and reads, typed.
//!
//! Each enum reads only the texts it writes: an unknown one is an error naming it (a row written by a newer
//! version, or by hand), never a silent default. Serialized, a state is that same text (`snake_case`), so JSON that
//! shows one reads as before.

/// A state's stored text that no variant of its enum names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownStatus {
    /// Which state it claimed to be (`task status`, …).
    pub what: &'static str,
    pub value: String,
}

/// One enum of stored states: the variants with their stored text, `as_str`, parsing, `Display` and serde.
macro_rules! stored_status {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The text the store keeps.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownStatus {
                        what: $what,
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownStatus;

            fn try_from(s: String) -> Result<Self, UnknownStatus> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_status! {
    /// What became of a stored mail (`messages.status`). A duplicate is never stored, so it is no state here
    /// (`pipeline::Status` reports it).
    MessageStatus, "message status" {
        Processed = "processed",
        /// It joined a known demand's case and created no tasks.
        Linked = "linked",
        Quarantined = "quarantined",
    }
}

/// A [`MessageRecord`](super::MessageRecord) is built `processed` (its `Default`); the pipeline sets the status its
/// outcome decides before the record is stored.
impl Default for MessageStatus {
    fn default() -> Self {
        MessageStatus::Processed
    }
}

stored_status! {
    /// A task's state (`tasks.status`).
    TaskStatus, "task status" {
        Open = "open",
        Done = "done",
    }
}

stored_status! {
    /// A notification's state in the outbox (`outbox.status`).
    NotificationStatus, "notification status" {
        /// Waiting to be sent, or to be tried again.
        Pending = "pending",
        Sent = "sent",
        /// Failed for good.
        Failed = "failed",
        /// Set aside: the recipient reached the daily cap.
        Held = "held",
        /// Set aside: the recipient is not one taxinbox writes to.
        Refused = "refused",
    }
}

stored_status! {
    /// A task event's state in the sink outbox (`sink_outbox.status`).
    SinkEventStatus, "sink event status" {
        /// Waiting to be delivered, or to be tried again.
        Pending = "pending",
        Delivered = "delivered",
        /// Failed for good (until `sinks retry`).
        Failed = "failed",
    }
}

/// A boolean as both engines store it: an integer, 0 or not (SQLite has no boolean type). Decoded through this
/// type with `#[sqlx(try_from = "IntBool")]`, a row's field is a plain `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntBool(pub bool);

impl sqlx::Type<sqlx::Any> for IntBool {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for IntBool {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(IntBool(
            <i64 as sqlx::Decode<'r, sqlx::Any>>::decode(value)? != 0,
        ))
    }
}

impl From<IntBool> for bool {
    fn from(b: IntBool) -> bool {
        b.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_stored_text() {
        for s in [
            MessageStatus::Processed,
            MessageStatus::Linked,
            MessageStatus::Quarantined,
        ] {
            assert_eq!(s.as_str().parse::<MessageStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in [TaskStatus::Open, TaskStatus::Done] {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in [
            NotificationStatus::Pending,
            NotificationStatus::Sent,
            NotificationStatus::Failed,
            NotificationStatus::Held,
            NotificationStatus::Refused,
        ] {
            assert_eq!(s.as_str().parse::<NotificationStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in [
            SinkEventStatus::Pending,
            SinkEventStatus::Delivered,
            SinkEventStatus::Failed,
        ] {
            assert_eq!(s.as_str().parse::<SinkEventStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn an_unknown_stored_state_is_an_error_naming_it() {
        let e = "closed".parse::<TaskStatus>().unwrap_err();
        assert_eq!(e.to_string(), "unknown task status \"closed\"");
        assert!("duplicate".parse::<MessageStatus>().is_err());
    }
}
