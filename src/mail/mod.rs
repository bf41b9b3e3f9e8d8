//! Turning one raw RFC 5322 message into plain facts for the rules: decoded headers, readable text,
//! attachments (`parse`, with `html` rendering HTML as text and `mime_params` reading RFC 2231 file
//! names), the identifiers and demand data found in them (`extract`), the FNS envelope
//! XML (`xml`) and dates written the Russian way (`dates`).
//!
//! Everything here is pure: no filesystem, no network, no clock. Input is hostile by assumption (the
//! mailbox receives whatever anyone sends), so every size is bounded by the limits below and nothing
//! panics on malformed input.

pub mod dates;
pub mod extract;
mod html;
mod mime_params;
pub mod parse;
pub mod xml;

pub use extract::{extract, Facts};
pub use parse::{parse, Attachment, ForwardedMessage, ParseError, ParsedMail};
pub use xml::XmlDemand;

/// Hard limits that bound memory and time on hostile input.
pub mod limits {
    /// Largest raw message accepted. Mail servers commonly cap messages at 25–50 MB; a scanned demand
    /// with photos fits well below this, and the decoded copy plus the parse tree stay a small multiple
    /// of it, so one bad message cannot exhaust the worker's memory.
    pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

    /// Cap of `ParsedMail::text`. A real letter is a few KiB; rules only look for short phrases, and
    /// 1 MiB keeps every regex pass over the text cheap even for a mail that pastes a whole report.
    pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

    /// Cap of the text kept for one attachment. FNS envelope XML is 1–3 KiB; 2 MiB leaves room for
    /// large registers sent as XML/CSV while bounding the per-attachment copy.
    pub const MAX_ATTACHMENT_TEXT_BYTES: usize = 2 * 1024 * 1024;

    /// How many levels of attached messages (`message/rfc822` inside `message/rfc822` …) are read. A
    /// forward of a forward is realistic; beyond that nesting is an attack or a loop of bounces.
    pub const MAX_NESTED_MESSAGES: usize = 4;

    /// How deep `multipart/*` nesting is followed inside one message. Real clients nest 3–4 levels
    /// (mixed → related → alternative); the cap keeps our tree walk's recursion bounded.
    pub const MAX_MIME_DEPTH: usize = 32;

    /// Most attachments listed for one mail (outer and forwarded together). Hostile mail can declare
    /// thousands of tiny parts; nothing legitimate in this mailbox comes near this.
    pub const MAX_ATTACHMENTS: usize = 256;
}
