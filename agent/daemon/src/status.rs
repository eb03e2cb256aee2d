//! The agent's status documents (`sdwan_link::Status`): the retained online document published
//! on connect and after every apply or rejection, and the offline last will. Payload v2 adds
//! `held`, `digest` and `want` (`crate::gateway`); `serial` stays null there.

use sdwan_contract::json;
use sdwan_link::Status;

use crate::VERSION;

/// The online document: serial in use and last error. The error is shortened (marked with
/// ` ...`) until the document fits the readers' door ([`json::STATUS`], 16 KiB): a rejection
/// text can quote the payload (a node name, a command's stderr).
pub fn online(serial: Option<u32>, error: Option<&str>) -> String {
    online_doc(Status::online(serial, error.map(str::to_string), VERSION))
}

/// The document `status` as JSON, its error shortened as [`online`] does.
pub fn online_doc(mut status: Status) -> String {
    loop {
        let doc = status.to_json();
        let Some(e) = status
            .error
            .as_mut()
            .filter(|_| doc.len() > json::STATUS.max_bytes)
        else {
            return doc;
        };
        let mut cut = e.len() / 2;
        while !e.is_char_boundary(cut) {
            cut -= 1;
        }
        e.truncate(cut);
        e.push_str(" ...");
    }
}

/// The last will. Its serial is null: the will is fixed at connect time and the serial in use
/// may change after that; the master keeps the serial from the last online document.
pub fn last_will() -> String {
    Status::offline(None, VERSION).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_with_a_huge_error_fits_the_readers_door() {
        for error in ["x".repeat(100_000), "\u{1}é".repeat(30_000), "ok".into()] {
            let doc = online(Some(3), Some(&error));
            assert!(doc.len() <= json::STATUS.max_bytes, "{}", doc.len());
            let s = Status::from_json(doc.as_bytes()).unwrap();
            let e = s.error.unwrap();
            assert!(e == error || (e.ends_with(" ...") && error.starts_with(&e[..e.len() - 4])));
        }
    }
}
