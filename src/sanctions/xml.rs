//! The one XML walk the list readers share (UN, EU, UK): quick-xml events reduced to "an
//! element opens, with its attributes" and "an element closes, with its parent and its whole
//! text", errors naming a line. Each list's reader is then a match over element names.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::parse::ParseError;

/// What the walk reports.
pub(super) enum Node<'a> {
    /// An element opens (an empty element opens and then closes).
    Open { name: &'a [u8], attributes: Attributes<'a> },
    /// An element closes: its parent's name (empty at the root) and its text, trimmed, with
    /// references resolved.
    Close { name: &'a [u8], parent: &'a [u8], text: &'a str },
}

/// The attributes of an opening element, by local name.
pub(super) struct Attributes<'a>(&'a BytesStart<'a>);

impl Attributes<'_> {
    /// The unescaped value of `key`, when present and well formed.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.attributes().flatten().find(|a| a.key.local_name().as_ref() == key.as_bytes()).and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    }
}

/// Walks the whole document; `visit` returning `Err(problem)` stops it with that problem at
/// the current line.
pub(super) fn walk(
    xml: &[u8],
    file: &'static str,
    mut visit: impl FnMut(Node<'_>) -> Result<(), String>,
) -> Result<(), ParseError> {
    // Text is trimmed per element once read whole: trimming the pieces around a reference would
    // join `Tom &amp; Jerry` into `Tom&Jerry`.
    let mut reader = Reader::from_reader(xml);
    let error = |at: u64, problem: String| {
        let line = xml[..(at as usize).min(xml.len())].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        ParseError::Row { file, line, problem }
    };
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let at = reader.buffer_position();
        match reader.read_event_into(&mut buf) {
            Err(err) => return Err(error(at, err.to_string())),
            Ok(Event::Eof) if path.is_empty() => return Ok(()),
            Ok(Event::Eof) => {
                let open = String::from_utf8_lossy(path.last().map(Vec::as_slice).unwrap_or_default()).into_owned();
                return Err(error(at, format!("the document ends inside <{open}>")));
            }
            Ok(Event::Start(start)) => {
                let name = start.local_name().as_ref().to_vec();
                visit(Node::Open { name: &name, attributes: Attributes(&start) }).map_err(|p| error(at, p))?;
                path.push(name);
                text.clear();
            }
            Ok(Event::Empty(start)) => {
                let name = start.local_name().as_ref().to_vec();
                visit(Node::Open { name: &name, attributes: Attributes(&start) }).map_err(|p| error(at, p))?;
                let parent = path.last().map(Vec::as_slice).unwrap_or_default();
                visit(Node::Close { name: &name, parent, text: "" }).map_err(|p| error(at, p))?;
            }
            Ok(Event::Text(t)) => text.push_str(
                &t.xml_content(quick_xml::XmlVersion::Explicit1_0).map_err(|err| error(at, err.to_string()))?,
            ),
            Ok(Event::GeneralRef(r)) => {
                // Character references and the five XML entities, as the text they stand for.
                match r.resolve_char_ref().map_err(|err| error(at, err.to_string()))? {
                    Some(c) => text.push(c),
                    None => {
                        let name = r.decode().map_err(|err| error(at, err.to_string()))?;
                        let resolved = quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| error(at, format!("unknown entity &{name};")))?;
                        text.push_str(resolved);
                    }
                }
            }
            Ok(Event::CData(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(Event::End(_)) => {
                let Some(element) = path.pop() else { return Err(error(at, "unbalanced end tag".into())) };
                let parent = path.last().map(Vec::as_slice).unwrap_or_default();
                let value = std::mem::take(&mut text);
                visit(Node::Close { name: &element, parent, text: value.trim() }).map_err(|p| error(at, p))?;
            }
            Ok(_) => {}
        }
        buf.clear();
    }
}
