//! Small hand-made histories whose verdict is known.

use skiff_linearizability::{Cmp, Input, Operation, Outcome, Output, check};

const BUDGET: u64 = 1_000_000;

fn op(client: u64, input: Input, call: u64, ret: u64, output: Output) -> Operation {
    Operation {
        client,
        input,
        call,
        ret: Some(ret),
        output: Some(output),
    }
}

fn timed_out(client: u64, input: Input, call: u64) -> Operation {
    Operation {
        client,
        input,
        call,
        ret: None,
        output: None,
    }
}

fn put(key: u64, value: u64) -> Input {
    Input::Put { key, value }
}

fn get(key: u64) -> Input {
    Input::Get { key }
}

fn ok(h: &[Operation]) {
    assert_eq!(check(h, BUDGET), Outcome::Linearizable, "{h:#?}");
}

fn illegal(h: &[Operation]) {
    assert!(
        matches!(check(h, BUDGET), Outcome::Illegal { .. }),
        "{h:#?}"
    );
}

#[test]
fn sequential_put_get() {
    ok(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(2, get(1), 2, 3, Output::Get(Some((10, 2)))),
    ]);
}

#[test]
fn stale_read_after_acknowledged_write_is_rejected() {
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(1, put(1, 11), 2, 3, Output::Put { revision: 3 }),
        op(2, get(1), 4, 5, Output::Get(Some((10, 2)))),
    ]);
}

#[test]
fn lost_write_is_rejected() {
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(2, get(1), 2, 3, Output::Get(None)),
    ]);
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [None, Some((10, 2))] {
        ok(&[
            op(1, put(1, 10), 0, 5, Output::Put { revision: 2 }),
            op(2, get(1), 1, 3, Output::Get(seen)),
        ]);
    }
}

#[test]
fn reads_cannot_go_back_in_time() {
    // Both reads overlap the put, but the second starts after the first
    // returned the new value: it must not see the old one.
    illegal(&[
        op(1, put(1, 10), 0, 10, Output::Put { revision: 2 }),
        op(2, get(1), 1, 3, Output::Get(Some((10, 2)))),
        op(3, get(1), 4, 6, Output::Get(None)),
    ]);
}

#[test]
fn timed_out_write_may_or_may_not_happen() {
    let lost = timed_out(1, put(1, 10), 0);
    ok(&[lost.clone(), op(2, get(1), 5, 6, Output::Get(None))]);
    ok(&[
        lost.clone(),
        op(2, get(1), 5, 6, Output::Get(Some((10, 7)))),
    ]);
    // ... but only once, and not before it was sent.
    illegal(&[
        op(2, get(1), 0, 1, Output::Get(Some((10, 7)))),
        timed_out(1, put(1, 10), 2),
    ]);
}

#[test]
fn revisions_must_grow() {
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 5 }),
        op(1, put(1, 11), 2, 3, Output::Put { revision: 4 }),
    ]);
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 5 }),
        op(2, get(1), 2, 3, Output::Get(Some((10, 6)))),
    ]);
}

#[test]
fn delete() {
    ok(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(
            1,
            Input::Delete { key: 1 },
            2,
            3,
            Output::Delete { deleted: true },
        ),
        op(2, get(1), 4, 5, Output::Get(None)),
        op(
            2,
            Input::Delete { key: 1 },
            6,
            7,
            Output::Delete { deleted: false },
        ),
    ]);
    illegal(&[op(
        1,
        Input::Delete { key: 1 },
        0,
        1,
        Output::Delete { deleted: true },
    )]);
}

#[test]
fn compare_and_put() {
    let cas = |v, new| Input::Txn {
        key: 1,
        cmp: Cmp::Value(v),
        value: new,
    };
    // Two concurrent CAS from the same value: exactly one may win.
    ok(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(
            2,
            cas(Some(10), 20),
            2,
            5,
            Output::Txn {
                succeeded: true,
                revision: 3,
            },
        ),
        op(
            3,
            cas(Some(10), 30),
            2,
            5,
            Output::Txn {
                succeeded: false,
                revision: 3,
            },
        ),
    ]);
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(
            2,
            cas(Some(10), 20),
            2,
            5,
            Output::Txn {
                succeeded: true,
                revision: 3,
            },
        ),
        op(
            3,
            cas(Some(10), 30),
            2,
            5,
            Output::Txn {
                succeeded: true,
                revision: 4,
            },
        ),
    ]);
    // A failed compare on an absent key is wrong.
    illegal(&[op(
        1,
        cas(None, 5),
        0,
        1,
        Output::Txn {
            succeeded: false,
            revision: 1,
        },
    )]);
}

#[test]
fn compare_mod_revision() {
    let cas = |r, new| Input::Txn {
        key: 1,
        cmp: Cmp::ModRevision(r),
        value: new,
    };
    ok(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(
            2,
            cas(2, 20),
            2,
            3,
            Output::Txn {
                succeeded: true,
                revision: 3,
            },
        ),
        op(
            2,
            cas(2, 30),
            4,
            5,
            Output::Txn {
                succeeded: false,
                revision: 3,
            },
        ),
    ]);
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(
            2,
            cas(2, 20),
            2,
            3,
            Output::Txn {
                succeeded: true,
                revision: 3,
            },
        ),
        op(
            2,
            cas(2, 30),
            4,
            5,
            Output::Txn {
                succeeded: true,
                revision: 4,
            },
        ),
    ]);
    // After a timed-out put the revision is unknown: either answer is fine.
    for succeeded in [true, false] {
        ok(&[
            timed_out(1, put(1, 10), 0),
            op(
                2,
                cas(7, 20),
                3,
                4,
                Output::Txn {
                    succeeded,
                    revision: 9,
                },
            ),
        ]);
    }
}

#[test]
fn keys_are_independent() {
    ok(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(1, put(2, 20), 2, 3, Output::Put { revision: 3 }),
        op(2, get(2), 4, 5, Output::Get(Some((20, 3)))),
        op(2, get(1), 6, 7, Output::Get(Some((10, 2)))),
    ]);
    illegal(&[
        op(1, put(1, 10), 0, 1, Output::Put { revision: 2 }),
        op(1, put(2, 20), 2, 3, Output::Put { revision: 3 }),
        op(2, get(2), 4, 5, Output::Get(Some((20, 3)))),
        op(2, get(1), 6, 7, Output::Get(None)),
    ]);
}

/// Many concurrent clients on one key: memoization keeps this fast.
#[test]
fn wide_concurrency_is_tractable() {
    let mut h = Vec::new();
    for round in 0..50u64 {
        let t = round * 100;
        for c in 0..6u64 {
            let v = round * 10 + c;
            h.push(op(
                c,
                put(1, v),
                t + c,
                t + 50 + c,
                Output::Put { revision: 1000 + v },
            ));
        }
        h.push(op(
            9,
            get(1),
            t + 60,
            t + 70,
            Output::Get(Some((round * 10 + 5, 1000 + round * 10 + 5))),
        ));
    }
    ok(&h);
    h.push(timed_out(7, put(1, 99_999), 0));
    ok(&h);
}
