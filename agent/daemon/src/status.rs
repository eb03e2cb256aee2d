//! The agent's status documents (`sdwan_link::Status`): the retained online document published
//! on connect and after every apply or rejection, and the offline last will.

use sdwan_link::Status;

use crate::VERSION;

/// The online document: serial in use and last error.
pub fn online(serial: Option<u32>, error: Option<&str>) -> String {
    Status::online(serial, error.map(str::to_string), VERSION).to_json()
}

/// The last will. Its serial is null: the will is fixed at connect time and the serial in use
/// may change after that; the master keeps the serial from the last online document.
pub fn last_will() -> String {
    Status::offline(None, VERSION).to_json()
}
