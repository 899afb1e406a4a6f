//! Message content: what travels inside a Proteus ciphertext. Protocol Buffers
//! (prost), so old clients skip fields and variants they do not know and new ones
//! are added under new tags; `version` says which rules the sender followed.
//!
//! Every message has an id (a UUID the sender makes) so edits, deletes, reactions
//! and receipts can name it. Decoding is the trust boundary: [`Envelope::parse`]
//! checks ids, lengths and mention ranges, and only then is the content used.
//!
//! Tags are stable forever: never reuse or renumber one.

use chacha20poly1305::XChaCha20Poly1305;
use prost::Message as _;
use uuid::Uuid;

use crate::ClientError;

/// The content rules this client follows.
pub const CONTENT_VERSION: u32 = 1;
/// A text's length in bytes.
pub const MAX_TEXT: usize = 64 * 1024;
/// Mentions and link previews per text.
pub const MAX_ANNOTATIONS: usize = 64;

/// One message's content, checked: made here, or decoded from a peer and
/// passed [`EnvelopeIn::validate`]. It has no decoder of its own, so content
/// from a peer cannot become one any other way.
#[derive(Clone, PartialEq)]
pub struct Envelope {
    /// [`CONTENT_VERSION`] of the sender.
    pub version: u32,
    /// The message's id (a UUID, hyphenated).
    pub message_id: String,
    /// Self-deleting: the message is removed this long after the recipient first
    /// shows it.
    pub expires_after_ms: Option<u64>,
    /// What it is (`None`: a kind this client does not know).
    pub body: Option<Body>,
}

/// Message content is private: `Debug` shows the id and the kind, not what.
impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &self.version)
            .field("message_id", &self.message_id)
            .field("kind", &self.body.as_ref().map(Body::kind))
            .finish_non_exhaustive()
    }
}

/// One message's content as it travels (Protocol Buffers): what a peer sent,
/// decoded but not yet checked. Only [`EnvelopeIn::validate`] makes it an
/// [`Envelope`] the client acts on.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct EnvelopeIn {
    /// [`CONTENT_VERSION`] of the sender.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The message's id (a UUID, hyphenated).
    #[prost(string, tag = "2")]
    pub message_id: String,
    /// Self-deleting, in milliseconds.
    #[prost(uint64, optional, tag = "3")]
    pub expires_after_ms: Option<u64>,
    /// What it is.
    #[prost(oneof = "Body", tags = "10, 11, 12, 13, 14, 15, 16, 17")]
    pub body: Option<Body>,
}

/// Unchecked content is as private as checked content.
impl std::fmt::Debug for EnvelopeIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeIn")
            .field("version", &self.version)
            .field("kind", &self.body.as_ref().map(Body::kind))
            .finish_non_exhaustive()
    }
}

/// The kinds of content.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// A text.
    #[prost(message, tag = "10")]
    Text(Text),
    /// A new version of an earlier text of the same sender.
    #[prost(message, tag = "11")]
    Edit(Edit),
    /// Delete a message.
    #[prost(message, tag = "12")]
    Delete(Delete),
    /// React to a message (an empty emoji takes the reaction back).
    #[prost(message, tag = "13")]
    Reaction(Reaction),
    /// Delivery or read receipts.
    #[prost(message, tag = "14")]
    Receipt(Receipt),
    /// A knock ("ping").
    #[prost(message, tag = "15")]
    Knock(Knock),
    /// An encrypted asset stored on the server.
    #[prost(message, tag = "16")]
    Asset(AssetRef),
    /// The real content is the message's shared `data` blob, sent once for all
    /// devices instead of once per device.
    #[prost(message, tag = "17")]
    External(External),
}

impl Body {
    /// What kind of content this is, for logs and errors (never the content).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Edit(_) => "edit",
            Self::Delete(_) => "delete",
            Self::Reaction(_) => "reaction",
            Self::Receipt(_) => "receipt",
            Self::Knock(_) => "knock",
            Self::Asset(_) => "asset",
            Self::External(_) => "external",
        }
    }
}

/// The key to a large message sent once as the shared `data` blob.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct External {
    /// XChaCha20-Poly1305 key of the blob (32 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// SHA-256 of the blob as sent.
    #[prost(bytes = "vec", tag = "2")]
    pub sha256: Vec<u8>,
}

/// The key is a secret: `Debug` shows nothing of it.
impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External").finish_non_exhaustive()
    }
}

/// A text with its mentions and link previews.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct Text {
    /// UTF-8 text.
    #[prost(string, tag = "1")]
    pub content: String,
    /// People mentioned.
    #[prost(message, repeated, tag = "2")]
    pub mentions: Vec<Mention>,
    /// Previews of links in the text, made by the sender (the recipient never
    /// fetches the link).
    #[prost(message, repeated, tag = "3")]
    pub link_previews: Vec<LinkPreview>,
    /// The message this text replies to. An older client skips the field
    /// and shows the text alone.
    #[prost(message, optional, tag = "4")]
    pub quote: Option<Quote>,
}

/// What a reply quotes: the message it answers, by id. The words quoted are
/// the receiver's own copy of that message (none when it is not on the
/// device): a reply never carries them again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Quote {
    /// The quoted message's id (a UUID, hyphenated).
    #[prost(string, tag = "1")]
    pub message_id: String,
}

/// A mention: a byte range of the text naming a user.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mention {
    /// Byte offset into the text.
    #[prost(uint32, tag = "1")]
    pub start: u32,
    /// Length in bytes.
    #[prost(uint32, tag = "2")]
    pub length: u32,
    /// The user (a UUID).
    #[prost(string, tag = "3")]
    pub user_id: String,
}

/// A link preview.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinkPreview {
    /// The URL as it appears in the text.
    #[prost(string, tag = "1")]
    pub url: String,
    /// Byte offset of the URL in the text.
    #[prost(uint32, tag = "2")]
    pub url_offset: u32,
    /// The page's title.
    #[prost(string, tag = "3")]
    pub title: String,
    /// A summary.
    #[prost(string, tag = "4")]
    pub summary: String,
}

/// An edit.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Edit {
    /// The message it replaces.
    #[prost(string, tag = "1")]
    pub replacing_message_id: String,
    /// The new text.
    #[prost(message, optional, tag = "2")]
    pub text: Option<Text>,
}

/// A deletion.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Delete {
    /// The message.
    #[prost(string, tag = "1")]
    pub message_id: String,
    /// For everyone (sent to the conversation), or only for the sender's own
    /// devices.
    #[prost(bool, tag = "2")]
    pub for_everyone: bool,
}

/// A reaction.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reaction {
    /// The message.
    #[prost(string, tag = "1")]
    pub message_id: String,
    /// The emoji; empty takes the reaction back.
    #[prost(string, tag = "2")]
    pub emoji: String,
}

/// Receipts for messages.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Receipt {
    /// Delivered or read.
    #[prost(enumeration = "ReceiptKind", tag = "1")]
    pub kind: i32,
    /// The messages.
    #[prost(string, repeated, tag = "2")]
    pub message_ids: Vec<String>,
}

/// What a receipt says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
pub enum ReceiptKind {
    /// The message reached the device.
    Delivered = 0,
    /// The person saw it.
    Read = 1,
}

/// A knock.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Knock {
    /// A louder knock.
    #[prost(bool, tag = "1")]
    pub hot: bool,
}

/// A reference to an encrypted asset (the assets issue fills in the upload).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AssetRef {
    /// The asset's key on the server.
    #[prost(string, tag = "1")]
    pub asset_key: String,
    /// The token that lets others download it.
    #[prost(string, tag = "2")]
    pub asset_token: String,
    /// The symmetric key it is encrypted with.
    #[prost(bytes = "vec", tag = "3")]
    pub otr_key: Vec<u8>,
    /// SHA-256 of the ciphertext.
    #[prost(bytes = "vec", tag = "4")]
    pub sha256: Vec<u8>,
    /// MIME type.
    #[prost(string, tag = "5")]
    pub mime_type: String,
    /// Plaintext size in bytes.
    #[prost(uint64, tag = "6")]
    pub size: u64,
    /// File name.
    #[prost(string, tag = "7")]
    pub name: String,
}

/// Message content is private: `Debug` shows the kind, not the words.
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("bytes", &self.content.len())
            .field("mentions", &self.mentions.len())
            .finish_non_exhaustive()
    }
}

impl Text {
    /// A text without mentions or link previews.
    pub fn plain(content: &str) -> Self {
        Self {
            content: content.to_owned(),
            mentions: Vec::new(),
            link_previews: Vec::new(),
            quote: None,
        }
    }
}

fn invalid(why: impl Into<String>) -> ClientError {
    ClientError::Decode(format!("invalid message content: {}", why.into()))
}

fn check_id(id: &str) -> Result<(), ClientError> {
    Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| invalid("a message id is not a UUID"))
}

fn check_text(text: &Text) -> Result<(), ClientError> {
    if text.content.len() > MAX_TEXT {
        return Err(invalid("text too long"));
    }
    if text.mentions.len() > MAX_ANNOTATIONS || text.link_previews.len() > MAX_ANNOTATIONS {
        return Err(invalid("too many mentions or link previews"));
    }
    let in_text = |start: u32, len: usize| {
        let start = start as usize;
        start
            .checked_add(len)
            .and_then(|end| text.content.get(start..end))
    };
    for m in &text.mentions {
        in_text(m.start, m.length as usize)
            .ok_or_else(|| invalid("a mention is outside the text"))?;
        Uuid::parse_str(&m.user_id).map_err(|_| invalid("a mention names no user"))?;
    }
    for p in &text.link_previews {
        if in_text(p.url_offset, p.url.len()) != Some(p.url.as_str()) {
            return Err(invalid("a link preview's URL is not in the text"));
        }
    }
    if let Some(quote) = &text.quote {
        check_id(&quote.message_id)?;
    }
    Ok(())
}

impl Envelope {
    /// A new message with a fresh id.
    pub fn new(body: Body) -> Self {
        Self {
            version: CONTENT_VERSION,
            message_id: Uuid::new_v4().to_string(),
            expires_after_ms: None,
            body: Some(body),
        }
    }

    /// A plain text.
    pub fn text(content: &str) -> Self {
        Self::new(Body::Text(Text::plain(content)))
    }

    /// The bytes to encrypt.
    pub fn to_bytes(&self) -> Vec<u8> {
        EnvelopeIn {
            version: self.version,
            message_id: self.message_id.clone(),
            expires_after_ms: self.expires_after_ms,
            body: self.body.clone(),
        }
        .encode_to_vec()
    }

    /// Decodes and checks content from a peer: [`EnvelopeIn::decode`], then
    /// [`EnvelopeIn::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ClientError> {
        EnvelopeIn::decode(bytes)
            .map_err(|e| invalid(e.to_string()))?
            .validate()
    }
}

impl EnvelopeIn {
    /// Checks content from a peer: a version, well-formed ids (a reply's quote
    /// too), text within its limits with mentions and previews inside it, bounded receipts and
    /// reactions, a 32-byte external key and hash. Unknown fields were skipped
    /// by the decoder; a body of a kind this client does not know stays `None`.
    pub fn validate(self) -> Result<Envelope, ClientError> {
        let envelope = self;
        if envelope.version == 0 {
            return Err(invalid("no version"));
        }
        check_id(&envelope.message_id)?;
        match &envelope.body {
            Some(Body::Text(t)) => check_text(t)?,
            Some(Body::Edit(e)) => {
                check_id(&e.replacing_message_id)?;
                check_text(
                    e.text
                        .as_ref()
                        .ok_or_else(|| invalid("an edit without text"))?,
                )?;
            }
            Some(Body::Delete(d)) => check_id(&d.message_id)?,
            Some(Body::Reaction(r)) => {
                check_id(&r.message_id)?;
                if r.emoji.len() > 64 {
                    return Err(invalid("reaction too long"));
                }
            }
            Some(Body::Receipt(r)) => {
                if r.message_ids.len() > 1000 {
                    return Err(invalid("too many receipts"));
                }
                ReceiptKind::try_from(r.kind).map_err(|_| invalid("unknown receipt kind"))?;
                r.message_ids.iter().try_for_each(|id| check_id(id))?;
            }
            Some(Body::External(e)) => {
                if e.key.len() != 32 || e.sha256.len() != 32 {
                    return Err(invalid("an external key and hash are 32 bytes each"));
                }
            }
            Some(Body::Knock(_) | Body::Asset(_)) | None => {}
        }
        Ok(Envelope {
            version: envelope.version,
            message_id: envelope.message_id,
            expires_after_ms: envelope.expires_after_ms,
            body: envelope.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_is_checked() {
        let bob = Uuid::new_v4().to_string();
        let mut text = Envelope::text("hi @bob see https://x.example");
        if let Some(Body::Text(t)) = &mut text.body {
            t.mentions.push(Mention {
                start: 3,
                length: 4,
                user_id: bob.clone(),
            });
            t.link_previews.push(LinkPreview {
                url: "https://x.example".into(),
                url_offset: 12,
                title: "X".into(),
                summary: String::new(),
            });
        }
        text.expires_after_ms = Some(5000);
        assert_eq!(Envelope::parse(&text.to_bytes()).expect("valid"), text);

        let mut outside = text.clone();
        if let Some(Body::Text(t)) = &mut outside.body {
            t.mentions[0].start = 40;
        }
        assert!(Envelope::parse(&outside.to_bytes()).is_err());
        let mut no_id = text.clone();
        no_id.message_id = "x".into();
        assert!(Envelope::parse(&no_id.to_bytes()).is_err());
        assert!(Envelope::parse(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn decoded_content_is_used_only_once_validated() {
        let unchecked = EnvelopeIn {
            version: 0,
            message_id: "not an id".into(),
            expires_after_ms: None,
            body: None,
        };
        let decoded = EnvelopeIn::decode(unchecked.encode_to_vec().as_slice())
            .expect("well-formed Protocol Buffers decode");
        assert!(decoded.validate().is_err(), "no version, no valid id");
        let shown = format!("{:?}", Envelope::text("secret words"));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("text"), "{shown}");
    }

    #[test]
    fn a_reply_names_a_message_and_older_clients_read_its_text() {
        let original = Uuid::new_v4().to_string();
        let mut text = Text::plain("yes");
        text.quote = Some(Quote {
            message_id: original.clone(),
        });
        let reply = Envelope::new(Body::Text(text.clone()));
        assert_eq!(Envelope::parse(&reply.to_bytes()).expect("valid"), reply);

        // A client from before replies knew tags 1 to 3 of a text only.
        #[derive(Clone, PartialEq, prost::Message)]
        struct TextBeforeReplies {
            #[prost(string, tag = "1")]
            content: String,
            #[prost(message, repeated, tag = "2")]
            mentions: Vec<Mention>,
        }
        let old = TextBeforeReplies::decode(text.encode_to_vec().as_slice())
            .expect("an older client decodes a reply");
        assert_eq!(old.content, "yes");

        let mut bad = text;
        bad.quote = Some(Quote {
            message_id: "not an id".into(),
        });
        let refused = Envelope::parse(&Envelope::new(Body::Text(bad)).to_bytes());
        assert!(refused.is_err(), "a quote names a message by its UUID");
    }

    #[test]
    fn unknown_fields_and_kinds_are_skipped() {
        let mut bytes = Envelope::text("hello").to_bytes();
        // Field 99, varint 1: a later version's field.
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        assert!(matches!(
            Envelope::parse(&bytes).expect("parses").body,
            Some(Body::Text(_))
        ));
        let future = Envelope {
            body: None,
            ..Envelope::text("x")
        };
        let mut bytes = future.to_bytes();
        // Field 40 (a future body kind), length-delimited, empty.
        bytes.extend_from_slice(&[0xc2, 0x02, 0x00]);
        assert_eq!(Envelope::parse(&bytes).expect("parses").body, None);
    }
}

/// Content this big goes once as the shared `data` blob.
pub const EXTERNAL_THRESHOLD: usize = 4 * 1024;

/// Seals large content for the shared blob: the small envelope to encrypt per
/// device (same message id) and the blob (`nonce ‖ ciphertext`).
pub fn seal_external(envelope: &Envelope) -> Result<(Envelope, Vec<u8>), ClientError> {
    use sha2::Digest as _;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut())
        .map_err(|e| ClientError::Crypto(format!("no randomness: {e}")))?;
    let plaintext = zeroize::Zeroizing::new(envelope.to_bytes());
    let blob = crate::sealed::seal::<XChaCha20Poly1305>(&key, &[], &plaintext)
        .ok_or_else(|| ClientError::Crypto("sealing the shared blob failed".into()))?;
    let small = Envelope {
        version: CONTENT_VERSION,
        message_id: envelope.message_id.clone(),
        expires_after_ms: envelope.expires_after_ms,
        body: Some(Body::External(External {
            key: key.to_vec(),
            sha256: sha2::Sha256::digest(&blob).to_vec(),
        })),
    };
    Ok((small, blob))
}

/// Opens the shared blob named by an [`External`] and parses the content in it.
pub fn open_external(external: &External, blob: &[u8]) -> Result<Envelope, ClientError> {
    use sha2::Digest as _;
    if sha2::Sha256::digest(blob).as_slice() != external.sha256.as_slice() {
        return Err(invalid("the shared blob does not match its hash"));
    }
    let key: [u8; 32] = external
        .key
        .as_slice()
        .try_into()
        .map_err(|_| invalid("bad external key"))?;
    let key = zeroize::Zeroizing::new(key);
    let plaintext = crate::sealed::open::<XChaCha20Poly1305>(&key, &[], blob)
        .ok_or_else(|| invalid("the shared blob does not decrypt"))?;
    let inner = Envelope::parse(&plaintext)?;
    if matches!(inner.body, Some(Body::External(_))) {
        return Err(invalid("a shared blob inside a shared blob"));
    }
    Ok(inner)
}

#[cfg(test)]
mod external_tests {
    use super::*;

    #[test]
    fn large_content_travels_once_in_the_blob() {
        let big = Envelope::text(&"x".repeat(EXTERNAL_THRESHOLD * 4));
        let (small, blob) = seal_external(&big).expect("sealed");
        assert!(
            small.to_bytes().len() < 150,
            "the per-device part stays small"
        );
        let Some(Body::External(external)) =
            Envelope::parse(&small.to_bytes()).expect("parses").body
        else {
            panic!("an external body")
        };
        assert_eq!(open_external(&external, &blob).expect("opens"), big);
        let mut tampered = blob.clone();
        tampered[30] ^= 1;
        assert!(open_external(&external, &tampered).is_err());
    }
}
