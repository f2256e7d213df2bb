//! Truncation to an offset, as a follower does when its history diverged.

use crate::common::*;

#[test]
fn truncate_cuts_at_the_batch_holding_the_offset_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("trunc", 0);
    create(&engine, std::slice::from_ref(&t), None);
    for r in 0..400 {
        append(&engine, &t, batch(&format!("a{r}"), 4, r), r % 100 == 0);
    }
    // 4 records per batch: offset 1_203 is inside the batch at 1_200.
    let o = with_partition(&engine, &t, |p| async move {
        p.truncate_to(1_203).await.expect("truncate");
        p.offsets()
    });
    assert_eq!(o.log_end_offset, 1_200);
    let got = read_all(&engine, &t, 0);
    assert_eq!(got.len(), 300);
    assert_eq!(decode(&got[299]).0, 1_196);
    let info = append(&engine, &t, batch("b", 2, 9), true);
    assert_eq!(info.base_offset, 1_200);
    // Truncate exactly to a segment boundary, then past everything to 0.
    let segs = with_partition(&engine, &t, |p| async move { p.segments() });
    let boundary = segs[segs.len() / 2].0;
    let o = with_partition(&engine, &t, move |p| async move {
        p.truncate_to(boundary).await.expect("truncate");
        p.offsets()
    });
    assert_eq!(o.log_end_offset, boundary);
    engine.shutdown().expect("shutdown");
    let engine = start(small_config(dir.path(), 1));
    let o2 = with_partition(&engine, &t, |p| async move { p.offsets() });
    assert_eq!(o2.log_end_offset, boundary);
    let got = read_all(&engine, &t, 0);
    assert_eq!(
        got.iter().map(|b| decode(b).1.len() as u64).sum::<u64>(),
        boundary
    );
    let o3 = with_partition(&engine, &t, |p| async move {
        p.truncate_to(0).await.expect("truncate");
        p.offsets()
    });
    assert_eq!((o3.log_start_offset, o3.log_end_offset), (0, 0));
    let info = append(&engine, &t, batch("c", 1, 1), true);
    assert_eq!(info.base_offset, 0);
    engine.shutdown().expect("shutdown");
}
