//! Maps a byte offset in the source back to the key path there, e.g.
//! `interface[1].neighbour[0].qpn`. Serde errors carry a span but not the path
//! (and never array indices), so we walk the parsed document to recover it.

use toml_edit::{ImDocument, Item, Table, Value};

/// The key path whose key or value covers `offset`, or whose table header does.
/// `None` when the source is not valid TOML or nothing covers the offset.
pub(crate) fn key_path_at(source: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(source).ok()?;
    let mut best = None;
    // Not `walk_table`: the root's own span would claim every unmatched offset.
    walk_children(doc.as_table(), "", offset, &mut best);
    best.map(|found: Found| found.path)
}

struct Found {
    path: String,
    /// Width of the matching span; the narrowest match is the most specific.
    width: usize,
}

fn consider(
    best: &mut Option<Found>,
    span: Option<std::ops::Range<usize>>,
    offset: usize,
    path: &str,
) {
    let Some(span) = span else { return };
    // An empty span still marks a position (e.g. end of input).
    let covers = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !covers {
        return;
    }
    let width = span.len();
    let narrower = match best {
        Some(b) => width <= b.width,
        None => true,
    };
    if narrower {
        *best = Some(Found {
            path: path.to_owned(),
            width,
        });
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn walk_table(table: &Table, path: &str, offset: usize, best: &mut Option<Found>) {
    consider(best, table.span(), offset, path);
    walk_children(table, path, offset, best);
}

fn walk_children(table: &Table, path: &str, offset: usize, best: &mut Option<Found>) {
    for (name, item) in table.iter() {
        let child = join(path, name);
        if let Some(key) = table.key(name) {
            consider(best, key.span(), offset, &child);
        }
        walk_item(item, &child, offset, best);
    }
}

fn walk_item(item: &Item, path: &str, offset: usize, best: &mut Option<Found>) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, path, offset, best),
        Item::Table(table) => walk_table(table, path, offset, best),
        Item::ArrayOfTables(array) => {
            for (i, table) in array.iter().enumerate() {
                walk_table(table, &format!("{path}[{i}]"), offset, best);
            }
        }
    }
}

fn walk_value(value: &Value, path: &str, offset: usize, best: &mut Option<Found>) {
    consider(best, value.span(), offset, path);
    match value {
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                walk_value(element, &format!("{path}[{i}]"), offset, best);
            }
        }
        Value::InlineTable(table) => {
            for (name, element) in table.iter() {
                let child = join(path, name);
                if let Some(key) = table.key(name) {
                    consider(best, key.span(), offset, &child);
                }
                walk_value(element, &child, offset, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::key_path_at;

    fn path_of(source: &str, needle: &str) -> Option<String> {
        key_path_at(source, source.find(needle).unwrap())
    }

    #[test]
    fn finds_nested_paths_with_indices() {
        let src = "[dataplane]\nburst = 3\n\n[[interface]]\nname = \"a\"\n\n[[interface]]\nname = \"b\"\npkey = 7\n[[interface.neighbour]]\nqpn = 9\n";
        assert_eq!(path_of(src, "burst").as_deref(), Some("dataplane.burst"));
        assert_eq!(path_of(src, "3").as_deref(), Some("dataplane.burst"));
        assert_eq!(path_of(src, "pkey").as_deref(), Some("interface[1].pkey"));
        assert_eq!(
            path_of(src, "9").as_deref(),
            Some("interface[1].neighbour[0].qpn")
        );
    }

    #[test]
    fn finds_array_elements_and_inline_tables() {
        let src = "lcores = [1, 22]\nt = { a = { b = 5 } }\n";
        assert_eq!(path_of(src, "22").as_deref(), Some("lcores[1]"));
        assert_eq!(path_of(src, "5").as_deref(), Some("t.a.b"));
    }

    #[test]
    fn invalid_toml_has_no_path() {
        assert_eq!(key_path_at("a = = 1", 3), None);
    }
}
