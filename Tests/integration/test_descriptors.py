"""Our hand-written proto subset must match Envoy's published API (PyPI
xds-protos): same packages, message names, field numbers, types and labels."""
import os
import tempfile

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import envoy.config.core.v3.base_pb2 as base
import envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 as pm
import envoy.service.ext_proc.v3.external_processor_pb2 as ep
import envoy.type.v3.http_status_pb2 as hs

from harness import ROOT

FILES = {
    "envoy/config/core/v3/base.proto": base,
    "envoy/type/v3/http_status.proto": hs,
    "envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto": pm,
    "envoy/service/ext_proc/v3/external_processor.proto": ep,
}


def ours():
    out = os.path.join(tempfile.mkdtemp(), "set.pb")
    rc = protoc.main(["protoc", f"--proto_path={ROOT}/proto", f"--descriptor_set_out={out}"] + list(FILES))
    assert rc == 0
    s = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        s.ParseFromString(f.read())
    return {f.name: f for f in s.file}


def theirs(module):
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    return fd


def messages(fd, prefix=""):
    for m in fd.message_type if hasattr(fd, "message_type") else fd.nested_type:
        yield prefix + m.name, m
        yield from messages_nested(m, prefix + m.name + ".")


def messages_nested(m, prefix):
    for n in m.nested_type:
        yield prefix + n.name, n
        yield from messages_nested(n, prefix + n.name + ".")


def test_every_field_matches_xds_protos():
    mine = ours()
    checked = 0
    for name, module in FILES.items():
        a, b = mine[name], theirs(module)
        assert a.package == b.package, name
        upstream = dict(messages(b))
        for mname, m in messages(a):
            assert mname in upstream, f"{name}: message {mname} not in Envoy's API"
            up = {f.number: f for f in upstream[mname].field}
            for f in m.field:
                assert f.number in up, f"{mname}.{f.name} = {f.number} not in Envoy's API"
                u = up[f.number]
                assert (f.name, f.type, f.label, f.type_name) == (u.name, u.type, u.label, u.type_name), \
                    f"{mname}.{f.name}: ours {(f.name, f.type, f.label, f.type_name)} != {(u.name, u.type, u.label, u.type_name)}"
                checked += 1
            for e in m.enum_type:
                ue = {x.name: x for x in upstream[mname].enum_type}[e.name]
                uv = {v.name: v.number for v in ue.value}
                for v in e.value:
                    assert uv.get(v.name) == v.number, f"{mname}.{e.name}.{v.name}"
        for e in a.enum_type:
            ue = {x.name: x for x in b.enum_type}[e.name]
            uv = {v.name: v.number for v in ue.value}
            for v in e.value:
                assert uv.get(v.name) == v.number, f"{e.name}.{v.name}"
    assert checked >= 60, checked


def test_oneof_membership_matches():
    mine = ours()["envoy/service/ext_proc/v3/external_processor.proto"]
    up = theirs(ep)
    for mname in ("ProcessingRequest", "ProcessingResponse", "BodyMutation"):
        a = next(m for m in mine.message_type if m.name == mname)
        b = next(m for m in up.message_type if m.name == mname)
        in_a = {f.name for f in a.field if f.HasField("oneof_index")}
        in_b = {f.name for f in b.field if f.HasField("oneof_index")}
        assert in_a <= in_b, mname
