//! Bad input over the etcd v3 gRPC API gets etcd's error (code and message),
//! never a panic, a hang or a changed store.

mod common;

use bytes::{Buf, BufMut, Bytes};
use common::SkiffStore;
use etcdpb::kv_client::KvClient;
use etcdpb::lease_client::LeaseClient;
use etcdpb::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

async fn connect(s: &SkiffStore) -> Channel {
    Channel::from_shared(s.url()).unwrap().connect().await.unwrap()
}

fn assert_status<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, msg: &str) {
    let e = r.expect_err("request should fail");
    assert_eq!((e.code(), e.message()), (code, msg), "{e:?}");
}

fn put(key: &'static str, value: Bytes) -> PutRequest {
    PutRequest { key: Bytes::from_static(key.as_bytes()), value, ..Default::default() }
}

fn put_op(key: &'static str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(put(key, Bytes::from_static(b"v")))) }
}

#[tokio::test]
async fn invalid_requests_get_etcds_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = SkiffStore::start(dir.path(), &[]);
    let ch = connect(&s).await;
    let mut kv = KvClient::new(ch.clone());
    let mut lease = LeaseClient::new(ch);

    const NO_KEY: &str = "etcdserver: key is not provided";
    assert_status(kv.put(put("", Bytes::from_static(b"v"))).await, Code::InvalidArgument, NO_KEY);
    assert_status(kv.range(RangeRequest::default()).await, Code::InvalidArgument, NO_KEY);
    assert_status(kv.delete_range(DeleteRangeRequest::default()).await, Code::InvalidArgument, NO_KEY);
    assert_status(
        // (An unknown sort *order* is accepted, as by etcd; an unknown target, which
        // crashes etcd 3.4, is refused.)
        kv.range(RangeRequest { key: Bytes::from("k"), sort_order: 1, sort_target: 9, ..Default::default() }).await,
        Code::InvalidArgument,
        "etcdserver: invalid sort option",
    );
    // Over the gRPC message limit (2 MiB): grpc-go's status, as etcd answers.
    let e = kv.put(put("huge", Bytes::from(vec![b'x'; 2_200_000]))).await.expect_err("too big");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().starts_with("grpc: received message larger than max ("), "{e:?}");
    // Over --max-request-bytes (1.5 MiB) but under the transport limit.
    assert_status(
        kv.put(put("big", Bytes::from(vec![b'x'; 1_700_000]))).await,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    assert_status(
        kv.put(PutRequest { key: Bytes::from("k"), value: Bytes::from("v"), ignore_value: true, ..Default::default() }).await,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    assert_status(
        kv.put(PutRequest { key: Bytes::from("absent"), ignore_value: true, ..Default::default() }).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_status(
        kv.put(PutRequest { key: Bytes::from("k"), lease: 12345, ..Default::default() }).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_status(
        kv.range(RangeRequest { key: Bytes::from("k"), revision: 99, ..Default::default() }).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    let too_many = TxnRequest { success: (0..129).map(|_| put_op("k")).collect(), ..Default::default() };
    assert_status(kv.txn(too_many).await, Code::InvalidArgument, "etcdserver: too many operations in txn request");
    let dup = TxnRequest { success: vec![put_op("k"), put_op("k")], ..Default::default() };
    assert_status(kv.txn(dup).await, Code::InvalidArgument, "etcdserver: duplicate key given in txn request");
    assert_status(
        lease.lease_grant(LeaseGrantRequest { ttl: 9_000_000_001, id: 0 }).await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );
    assert_status(lease.lease_revoke(LeaseRevokeRequest { id: 77 }).await, Code::NotFound, "etcdserver: requested lease not found");
    lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 5 }).await.unwrap();
    assert_status(lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 5 }).await, Code::FailedPrecondition, "etcdserver: lease already exists");

    // None of that changed anything: only the lease grant was a write, and it adds no revision.
    let r = kv.range(RangeRequest { key: Bytes::from_static(&[0]), range_end: Bytes::from_static(&[0]), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!((r.count, r.header.unwrap().revision), (0, 1));
}

/// Sends raw bytes as a gRPC message body, to feed the server malformed protobuf.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}
impl Encoder for RawEnc {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
impl Decoder for RawDec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test]
async fn malformed_protobuf_is_rejected_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = SkiffStore::start(dir.path(), &[]);
    let ch = connect(&s).await;
    let garbage: [&[u8]; 4] = [b"\xff\xff\xff\xff\xff", b"\x0a\x7fshort", b"\x12", &[0x08; 64]];
    for body in garbage {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
        let r = grpc.unary(tonic::Request::new(Bytes::from_static(body)), path, RawCodec).await;
        let e = r.expect_err("garbage must be refused");
        assert!(matches!(e.code(), Code::Internal | Code::InvalidArgument), "{e:?}");
    }
    // Still alive, and nothing was written.
    let mut kv = KvClient::new(ch);
    let r = kv.range(RangeRequest { key: Bytes::from_static(&[0]), range_end: Bytes::from_static(&[0]), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(r.header.unwrap().revision, 1);
}
