//! Each device's event queue.

use super::*;

pub(super) async fn event_queues(s: &dyn Store) {
    let u = user("events@example.com");
    s.create_user(&u).await.expect("create");
    let at = |t: i64| Notify { payload: "", at: t };
    s.add_client(
        &client(&u, 1, ClientType::Permanent),
        &prekeys([65535]),
        7,
        at(10),
    )
    .await
    .expect("first device");
    assert!(
        s.events(u.id, ClientId(1), None, 10)
            .await
            .expect("page")
            .expect("known")
            .events
            .is_empty()
    );
    // A second device: the first is told, in the same transaction.
    let added = Notify {
        payload: r#"{"type":"user.client-add"}"#,
        at: 20,
    };
    s.add_client(
        &client(&u, 2, ClientType::Permanent),
        &prekeys([65535]),
        7,
        added,
    )
    .await
    .expect("second device");
    let page = s
        .events(u.id, ClientId(1), None, 10)
        .await
        .expect("page")
        .expect("known");
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        (page.events[0].id, page.events[0].payload.as_str()),
        (1, added.payload)
    );
    assert!(
        s.events(u.id, ClientId(2), None, 10)
            .await
            .expect("page")
            .expect("known")
            .events
            .is_empty()
    );
    // Profile updates reach every device; ids count up per device.
    for t in 0..5 {
        let update = Notify {
            payload: r#"{"type":"user.update"}"#,
            at: 30 + t,
        };
        s.update_profile(u.id, &ProfileUpdate::default(), update)
            .await
            .expect("update");
    }
    let page = s
        .events(u.id, ClientId(1), Some(1), 3)
        .await
        .expect("page")
        .expect("known");
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert!(page.has_more && !page.lost);
    let page = s
        .events(u.id, ClientId(1), Some(4), 3)
        .await
        .expect("page")
        .expect("known");
    assert_eq!((page.events.len(), page.has_more), (2, false));
    assert_eq!(
        s.last_event(u.id, ClientId(2))
            .await
            .expect("last")
            .map(|e| e.id),
        Some(5)
    );
    assert_eq!(
        s.events(u.id, ClientId(9), None, 10).await.expect("page"),
        None,
        "unknown device"
    );
    // Purging old events: a cursor before them is "lost", with what is still there.
    // Device 1: the add (at 20) and the updates at 30-32; device 2: the updates at 30-32.
    assert_eq!(s.purge_events(33).await.expect("purge"), 4 + 3);
    let page = s
        .events(u.id, ClientId(1), Some(1), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(page.lost);
    assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 6]);
    let page = s
        .events(u.id, ClientId(1), Some(4), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(!page.lost, "a cursor just before what remains lost nothing");
    let page = s
        .events(u.id, ClientId(1), Some(99), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(page.lost, "a cursor from the future is not this queue's");
    // A clock that stepped back: events 7, 8, 9 at 50, 45, 60. Purging before
    // 46 takes event 8 but leaves 7: a cursor at 7 missed 8 and is lost.
    for at in [50, 45, 60] {
        let update = Notify {
            payload: r#"{"type":"user.update"}"#,
            at,
        };
        s.update_profile(u.id, &ProfileUpdate::default(), update)
            .await
            .expect("update");
    }
    s.purge_events(46).await.expect("purge");
    let page = s
        .events(u.id, ClientId(1), Some(7), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(page.lost, "event 8 went: a cursor before it missed it");
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [9],
        "what the device already has is not sent again"
    );
    let page = s
        .events(u.id, ClientId(1), Some(8), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(!page.lost, "a cursor at 8 missed nothing");
    assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), [9]);
    // Removing a device tells the others and drops its queue.
    let removed = Notify {
        payload: r#"{"type":"user.client-remove"}"#,
        at: 40,
    };
    s.delete_client(u.id, ClientId(2), removed)
        .await
        .expect("delete");
    assert_eq!(
        s.last_event(u.id, ClientId(1))
            .await
            .expect("last")
            .map(|e| e.payload),
        Some(removed.payload.to_owned())
    );
    assert_eq!(
        s.events(u.id, ClientId(2), None, 10).await.expect("page"),
        None
    );
}
