//! The checks of the contract's fuzz targets, shared by the targets (`fuzz_targets/*.rs`) and
//! the regression test over the kept inputs (`tests/regressions.rs`, docs/fuzzing.md).

use sdwan_contract::v2::decode::{decode, PartDigest, Scratch};
use sdwan_contract::v2::encode::{decode_owned, Message};

/// Payload v2: any bytes as a message. The decoder never panics; the heap-free decoder and
/// the owned one agree; what decodes re-encodes to bytes that decode to the same logical
/// content and re-encode to themselves (one spelling per content); a part's items sum to the
/// same digest before and after.
pub fn v2_decode(data: &[u8]) {
    let mut scratch = Box::new(Scratch::new());
    let mut sum = PartDigest::default();
    let heap_free = decode(data, &mut scratch, &mut sum);
    let owned = decode_owned(data);
    assert_eq!(
        heap_free.as_ref().err(),
        owned.as_ref().err(),
        "the two decodings disagree"
    );
    let Ok(msg) = owned else {
        return;
    };
    let bytes = msg.encode().expect("an accepted message encodes");
    let again = decode_owned(&bytes).expect("the re-encoded message decodes");
    assert_eq!(again, msg, "re-encoding changed the content");
    assert_eq!(
        again.encode().unwrap(),
        bytes,
        "two spellings of one content"
    );
    if let Message::Part(_) = msg {
        let mut sum2 = PartDigest::default();
        decode(&bytes, &mut scratch, &mut sum2).unwrap();
        assert_eq!(sum.sum, sum2.sum, "the digest depends on the spelling");
    }
}
