"""Fixtures for the third-party client tests.

The Python classes are generated from proto/ with protoc (grpcio-tools) at
the start of the session, into a temporary directory: nothing generated is
committed. The herald under test is named by the environment
(scripts/python-clients.sh starts one):

  HERALD_TEST_REGISTRY_URL  the embedded registry of a running `herald dev`
  HERALD_TEST_KAFKA         its embedded Kafka (host:port)
  HERALD_TEST_GRPC          its gRPC address (host:port)
  HERALD_SCHEMA_REGISTRY_URL  Apicurio's Confluent API on the real stack
"""
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Generates the Python classes of proto/ and makes them importable."""
    out = tmp_path_factory.mktemp("gen")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    # The imports taken from Go modules (buf/validate/validate.proto), as
    # `make protodeps` prints them (see docs/contracts.md).
    deps = ROOT / ".herald" / "protodeps"
    if not deps.is_dir():
        pytest.fail(f"{deps} is missing: run make protodeps")
    protos += sorted(str(p.relative_to(deps)) for p in deps.rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"), "-I", str(deps),
         f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        check=True,
    )
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


def _env(name):
    value = os.environ.get(name, "")
    if not value:
        pytest.skip(f"{name} is not set")
    return value


@pytest.fixture(scope="session")
def herald_registry():
    return _env("HERALD_TEST_REGISTRY_URL")


@pytest.fixture(scope="session")
def herald_kafka():
    return _env("HERALD_TEST_KAFKA")


@pytest.fixture(scope="session")
def herald_grpc():
    return _env("HERALD_TEST_GRPC")


@pytest.fixture(scope="session")
def apicurio_registry():
    return _env("HERALD_SCHEMA_REGISTRY_URL")


@pytest.fixture
def prefix():
    """A fresh subject prefix: shared registries are never reset."""
    return f"pyclient-{uuid.uuid4().hex[:10]}"
