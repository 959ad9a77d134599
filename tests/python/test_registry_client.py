"""confluent-kafka-python's SchemaRegistryClient against herald's
embedded registry and against Apicurio (the real stack's registry)."""
from registry_checks import run_checks

# What Apicurio does differently, as recorded in docs/schema-evolution.md.
# The test fails when this set changes, so the record stays true.
APICURIO_DIFFERENCES = {
    "subjects, with subjectPrefix",
    "register serialized: same id, no new version",
    "lookup serialized",
    "lookup reordered, normalize",
    "schema by id, format=serialized",
    "delete a version, then the subject (soft, then permanent)",
}


def report(results):
    return "\n".join(f"{'ok  ' if ok else 'DIFF'} {name}: {detail}" for name, (ok, detail) in results.items())


def test_herald_registry(herald_registry, prefix):
    results = run_checks(herald_registry, prefix)
    failed = [name for name, (ok, _) in results.items() if not ok]
    assert not failed, report(results)


def test_apicurio_differences_are_the_recorded_ones(apicurio_registry, prefix):
    results = run_checks(apicurio_registry, prefix)
    print(report(results))
    failed = {name for name, (ok, _) in results.items() if not ok}
    assert failed == APICURIO_DIFFERENCES, report(results)
