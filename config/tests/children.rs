//! P_Key child interfaces (`parent = "ib0"`): what they inherit, how they are
//! numbered, and the errors that name what is wrong.

use ipoib_config::{from_str, ErrorKind};

const FILE: &str = "children.toml";

const PARENTS: &str = "[dataplane]\nlcores = [0, 1]\n\n\
[[interface]]\nname = \"ib0\"\nport = 1\nlcore = 1\nmtu = 1500\nlocal_ip = \"192.168.9.1\"\nipv4 = [\"10.0.0.1/24\"]\n\n\
[[interface]]\nname = \"ib1\"\nport = 2\nipv4 = [\"10.0.0.2/24\"]\n";

/// "FILE:LINE:" of the last line holding `needle`.
fn at(src: &str, needle: &str) -> String {
    let offset = src.rfind(needle).expect("needle in source");
    format!("{FILE}:{}:", src[..offset].matches('\n').count() + 1)
}

fn err(src: &str) -> (String, ErrorKind, Option<String>) {
    match from_str(src, FILE) {
        Ok(c) => panic!("accepted:\n{src}\n=> {c:?}"),
        Err(e) => (e.to_string(), e.kind(), e.key_path().map(str::to_owned)),
    }
}

#[test]
fn a_child_inherits_its_parents_port_and_is_numbered_per_parent() {
    // A child written before its parent is fine: parents are validated first.
    let src = format!(
        "[[interface]]\nname = \"ib0.8001\"\nparent = \"ib0\"\npkey = 0x8001\nipv4 = [\"10.1.0.1/24\"]\n\n{PARENTS}\n\
[[interface]]\nname = \"ib0.8002\"\nparent = \"ib0\"\npkey = 0x0002\nlcore = 0\nmtu = 1000\nqkey = 0x1234\n\n\
[[interface]]\nname = \"ib1.8001\"\nparent = \"ib1\"\npkey = 0x8001\nport = 2\n"
    );
    let c = from_str(&src, FILE).unwrap();
    let names: Vec<&str> = c.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["ib0.8001", "ib0", "ib1", "ib0.8002", "ib1.8001"],
        "file order kept"
    );
    let ib0 = c.interface("ib0").unwrap();
    let a = c.interface("ib0.8001").unwrap();
    assert_eq!(a.parent.as_deref(), Some("ib0"));
    assert_eq!(
        (a.port, a.guid, a.local_ip),
        (ib0.port, ib0.guid, ib0.local_ip)
    );
    assert_eq!((a.lcore, a.mtu, a.pkey, a.qkey), (1, 1500, 0x8001, 0x0B1B));
    assert_eq!(a.child_index, 1);
    let b = c.interface("ib0.8002").unwrap();
    assert_eq!(
        (b.lcore, b.mtu, b.pkey, b.qkey, b.child_index),
        (0, 1000, 2, 0x1234, 2)
    );
    let d = c.interface("ib1.8001").unwrap();
    assert_eq!((d.port, d.child_index, d.local_ip), (2, 1, None));
    assert_eq!(ib0.child_index, 0);
    assert_eq!(ib0.parent, None);
    // The effective configuration reads back the same.
    let again = from_str(&c.to_toml(), "emitted.toml").unwrap();
    assert_eq!(again, c);
}

#[test]
fn the_parent_must_exist_and_not_be_a_child() {
    let src = format!("{PARENTS}\n[[interface]]\nname = \"x\"\nparent = \"ib9\"\npkey = 0x8001\n");
    let (text, kind, key) = err(&src);
    assert_eq!(kind, ErrorKind::Invalid);
    assert_eq!(key.as_deref(), Some("interface[2].parent"));
    assert!(
        text.contains("expected the name of a configured interface (ib0, ib1), got \"ib9\""),
        "{text}"
    );
    assert!(text.starts_with(&at(&src, "parent = \"ib9")), "{text}");

    let src = format!(
        "{PARENTS}\n[[interface]]\nname = \"a\"\nparent = \"ib0\"\npkey = 0x8001\n\n\
[[interface]]\nname = \"b\"\nparent = \"a\"\npkey = 0x8002\n"
    );
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[3].parent"));
    assert!(text.contains("got \"a\", itself a child of ib0"), "{text}");

    let src = format!("{PARENTS}\n[[interface]]\nname = \"a\"\nparent = \"a\"\npkey = 0x8001\n");
    let (text, _, _) = err(&src);
    assert!(text.contains("itself a child of a"), "{text}");
}

#[test]
fn a_child_needs_its_own_partition_on_the_port() {
    // No P_Key: a child exists for its partition.
    let src = format!("{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\n");
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[2].pkey"));
    assert!(
        text.contains("missing required key on a child interface"),
        "{text}"
    );

    // The parent's own partition, spelled as a limited member.
    let src = format!("{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x7FFF\n");
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[2].pkey"));
    assert!(
        text.contains(
            "expected a P_Key not used on port 1 yet, got 0x7fff (interface[0] ib0 has 0xffff"
        ),
        "{text}"
    );

    // Two siblings in one partition.
    let src = format!(
        "{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x8001\n\n\
[[interface]]\nname = \"d\"\nparent = \"ib0\"\npkey = 0x0001\n"
    );
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[3].pkey"));
    assert!(text.contains("interface[2] c has 0x8001"), "{text}");

    // The same partition on another port is another interface: fine.
    let src = format!(
        "{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x8001\n\n\
[[interface]]\nname = \"d\"\nparent = \"ib1\"\npkey = 0x8001\n"
    );
    from_str(&src, FILE).unwrap();

    // P_Key rules as for any interface.
    let src = format!("{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x8000\n");
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[2].pkey"));
    assert!(text.contains("low 15 bits"), "{text}");
}

#[test]
fn a_child_shares_port_guid_and_address_with_its_parent() {
    for (extra, key, says) in [
        (
            "port = 2",
            "port",
            "expected the parent's port 1 (a child shares it), got 2",
        ),
        (
            "guid = 5",
            "guid",
            "expected the parent's guid 0x0002c90300000001",
        ),
        (
            "local_ip = \"192.168.9.2\"",
            "local_ip",
            "expected the parent's local_ip 192.168.9.1",
        ),
    ] {
        let src = format!(
            "{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x8001\n{extra}\n"
        );
        let (text, kind, k) = err(&src);
        assert_eq!(kind, ErrorKind::Invalid);
        assert_eq!(k.as_deref(), Some(format!("interface[2].{key}").as_str()));
        assert!(text.contains(says), "{text}");
        assert!(
            text.starts_with(&at(&src, extra)),
            "points at the value: {text}"
        );
    }
    // A child of a parent without local_ip cannot bring its own.
    let src = format!(
        "{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib1\"\npkey = 0x8001\nlocal_ip = \"1.2.3.4\"\n"
    );
    let (text, _, _) = err(&src);
    assert!(
        text.contains("expected no local_ip on a child whose parent has none"),
        "{text}"
    );
    // Names, TUN devices stay unique across parents and children.
    let src =
        format!("{PARENTS}\n[[interface]]\nname = \"ib1\"\nparent = \"ib0\"\npkey = 0x8001\n");
    let (text, _, key) = err(&src);
    assert_eq!(key.as_deref(), Some("interface[2].name"));
    assert!(text.contains("already used by interface[1]"), "{text}");
}

#[test]
fn a_parent_still_needs_a_port() {
    let src = "[[interface]]\nname = \"ib0\"\n";
    let (text, kind, key) = err(src);
    assert_eq!(kind, ErrorKind::Schema);
    assert_eq!(key.as_deref(), Some("interface[0].port"));
    assert!(text.starts_with(&format!("{FILE}:1:1: ")), "{text}");
    assert!(
        text.contains("missing required key, expected an integer in 1..=0xBFFF"),
        "{text}"
    );
}

#[test]
fn changing_a_childs_parent_is_a_changed_key() {
    let one = format!("{PARENTS}\n[[interface]]\nname = \"c\"\nparent = \"ib0\"\npkey = 0x8001\n");
    let two = one.replace("parent = \"ib0\"", "parent = \"ib1\"");
    let a = from_str(&one, FILE).unwrap();
    let b = from_str(&two, FILE).unwrap();
    assert!(a.to_toml().contains("parent = \"ib0\""));
    assert_ne!(a, b);
}
