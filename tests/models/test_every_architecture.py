"""Every model type the library implements has its test file here (a new architecture adds one,
which runs the shared tests of tester.py on its fixtures), and every golden fixture is covered."""

from pathlib import Path

from tester import fixtures

from pretrained import auto

HERE = Path(__file__).parent


def test_every_supported_model_type_has_its_test_file():
    want = {f"test_{t.replace('-', '_')}.py" for t in auto.supported_model_types()}
    have = {p.name for p in HERE.glob("test_*.py")} - {Path(__file__).name}
    assert want == have


def test_every_golden_fixture_is_of_a_supported_type():
    assert {f["model_type"] for f in fixtures().values()} == set(auto.supported_model_types())
