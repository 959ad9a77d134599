"""The SchemaRegistryClient calls a Python producer or operator makes,
run against any Confluent-API registry; each check reports instead of
failing, so one run lists every difference."""
import base64
import pathlib
import subprocess
import sys
import tempfile

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from google.protobuf import descriptor_pb2

V1 = 'syntax = "proto3";\npackage PACKAGE;\n\n// A payment.\nmessage Paid {\n  string order_id = 1;\n  int64 amount = 2;\n}\n'
# v1 with its fields in another order: the same schema once normalized.
V1_REORDERED = 'syntax = "proto3";\npackage PACKAGE;\n\nmessage Paid {\n  int64 amount = 2;\n  string order_id = 1;\n}\n'
V2 = 'syntax = "proto3";\npackage PACKAGE;\n\nmessage Paid {\n  string order_id = 1;\n  int64 amount = 2;\n  string note = 3;\n}\n'
BAD = 'syntax = "proto3";\npackage PACKAGE;\n\nmessage Paid {\n  string order_id = 1;\n  string amount = 2;\n}\n'


def serialized(text, name="pyclient/v1/paid.proto"):
    """Compiles .proto text with protoc and returns the base64
    FileDescriptorProto that confluent-kafka-python's serializer sends."""
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d, name)
        src.parent.mkdir(parents=True)
        src.write_text(text)
        out = pathlib.Path(d, "set.pb")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", d, f"--descriptor_set_out={out}", name], check=True)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return base64.standard_b64encode(fds.file[0].SerializeToString()).decode()


def run_checks(url, prefix):
    """Runs every check on fresh subjects under prefix; returns
    {check name: (passed, detail)}."""
    client = SchemaRegistryClient({"url": url})
    subject = f"{prefix}.paid-value"
    # A package of its own: registries that give equal content one id
    # across subjects must not find an earlier run's schema.
    package = prefix.replace("-", "_") + ".v1"

    def proto(text):
        return Schema(text.replace("PACKAGE", package), "PROTOBUF")

    def serialized_schema(text):
        return serialized(text.replace("PACKAGE", package))

    results = {}

    def check(name, fn):
        try:
            ok, detail = fn()
        except SchemaRegistryError as e:
            ok, detail = False, f"HTTP {e.http_status_code}, error code {e.error_code}: {e.error_message}"[:300]
        except Exception as e:  # noqa: BLE001 - a check reports, it does not stop the others
            ok, detail = False, f"{type(e).__name__}: {e}"[:300]
        results[name] = (ok, str(detail)[:200])

    state = {}

    def register():
        state["id"] = client.register_schema(subject, proto(V1))
        return isinstance(state["id"], int) and state["id"] > 0, f"id {state['id']}"

    check("register text", register)

    def subjects():
        everything, mine = client.get_subjects(), client.get_subjects(subject_prefix=prefix)
        return subject in everything and mine == [subject], f"with prefix: {mine[:5]} ({len(mine)} subjects)"

    check("subjects, with subjectPrefix", subjects)
    check("versions", lambda: (client.get_versions(subject) == [1], client.get_versions(subject)))

    def lookup(schema, normalize=False):
        def run():
            got = client.lookup_schema(subject, schema, normalize_schemas=normalize)
            return got.version == 1 and got.schema_id == state.get("id"), f"version {got.version}, id {got.schema_id}"
        return run

    check("lookup text", lookup(proto(V1)))
    check("lookup serialized", lookup(Schema(serialized_schema(V1), "PROTOBUF")))
    check("lookup reordered, normalize", lookup(proto(V1_REORDERED), normalize=True))
    def register_serialized():
        other = f"{prefix}.paid-serialized-value"
        text_id = client.register_schema(other, proto(V1))
        got = client.register_schema(other, Schema(serialized_schema(V1), "PROTOBUF"))
        versions = client.get_versions(other)
        return got == text_id and versions == [1], f"id {got} (as text: {text_id}), versions {versions}"

    check("register serialized: same id, no new version", register_serialized)
    check("compatibility: compatible", lambda: (client.test_compatibility(subject, proto(V2)) is True, "v2 adds a field"))
    check("compatibility: incompatible", lambda: (client.test_compatibility(subject, proto(BAD)) is False, "int64 -> string"))

    def config():
        client.set_compatibility(subject, "FULL")
        level = client.get_compatibility(subject)
        cfg = client.get_config(subject)
        return level == "FULL" and str(cfg.compatibility_level.value) == "FULL", f"level {level}, config {cfg.compatibility_level}"

    check("config: set and get a subject's level", config)

    def incompatible_register():
        try:
            client.register_schema(subject, proto(BAD))
        except SchemaRegistryError as e:
            return e.http_status_code == 409 and e.error_code in (409, 40901), f"HTTP {e.http_status_code}, error code {e.error_code}"
        return False, "registered"

    check("register incompatible: 409", incompatible_register)

    def serialized_format():
        got = client.get_schema(state["id"], fmt="serialized")
        fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.standard_b64decode(got.schema_str))
        names = [m.name for m in fdp.message_type]
        return fdp.package == package and names == ["Paid"], f"package {fdp.package}, messages {names}"

    check("schema by id, format=serialized", serialized_format)

    def by_id():
        subs = client.get_subjects_by_schema_id(state["id"])
        vers = [(v.subject, v.version) for v in client.get_schema_versions(state["id"])]
        # The same schema is version 1 of the serialized check's subject too.
        want = sorted([subject, f"{prefix}.paid-serialized-value"])
        return sorted(subs) == want and sorted(vers) == [(s, 1) for s in want], f"subjects {subs}, versions {vers}"

    check("subjects and versions of a schema id", by_id)

    def delete():
        client.set_compatibility(subject, "BACKWARD")
        client.register_schema(subject, proto(V2))
        deleted_version = client.delete_version(subject, 2)
        left = client.get_versions(subject)
        soft = client.delete_subject(subject)
        gone = subject not in client.get_subjects()
        hard = client.delete_subject(subject, permanent=True)
        ok = deleted_version == 2 and left == [1] and soft == [1] and gone and sorted(hard) == [1, 2]
        return ok, f"delete v2 -> {deleted_version}, left {left}, soft {soft}, listed after {not gone}, permanent {hard}"

    check("delete a version, then the subject (soft, then permanent)", delete)
    for leftover in (f"{prefix}.paid-serialized-value",):
        try:
            client.delete_subject(leftover)
            client.delete_subject(leftover, permanent=True)
        except SchemaRegistryError:
            pass
    return results
