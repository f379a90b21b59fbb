"""The layering rule: domain and storage code never imports the HTTP layer.

`geopush.api` may use everything below it; `geo`, `campaigns`, `crm`, `ingest`, `delivery`,
`places`, `store`, `insights` and `loyalty` (and the shared modules beside them) must work
without it, so the CLI, the importers and the background tasks do not drag aiohttp handlers
in, and refusals are domain exceptions that only the API's error middleware turns into HTTP.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from geopush import errors
from geopush.api.errors import DOMAIN_STATUS, domain_status

PACKAGE = Path(__file__).resolve().parents[2] / "geopush"
DOMAIN = ("geo", "campaigns", "crm", "ingest", "delivery", "places", "store", "insights",
          "loyalty")
# The one module allowed to compose the HTTP layer besides the API itself: the app factory.
# (The per-process state its handlers share is `geopush.api.runtime`.)
COMPOSERS = {"app.py"}


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])


def _imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module a source file imports, including imports inside functions."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from geopush import api`
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _reaches_api(module: str) -> bool:
    return module == "geopush.api" or module.startswith("geopush.api.")


def _files_outside_api() -> list[Path]:
    files = [p for p in PACKAGE.rglob("*.py") if "api" not in p.relative_to(PACKAGE).parts[:1]]
    return [p for p in files if p.relative_to(PACKAGE).as_posix() not in COMPOSERS]


def test_domain_packages_exist():
    # A renamed package would make the rule below check nothing.
    for name in DOMAIN:
        assert (PACKAGE / name / "__init__.py").is_file(), name


@pytest.mark.parametrize("path", _files_outside_api(),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_below_the_api_imports_it(path: Path):
    imports = _imported_modules(path.read_text(), _package_of(path))
    offending = [f"line {line}: {module}" for line, module in imports if _reaches_api(module)]
    assert not offending, f"{path.relative_to(PACKAGE)} imports the HTTP layer: {offending}"


@pytest.mark.parametrize("source", [
    "def f():\n    from geopush.api.stores import parse_store\n",  # hidden in a function
    "import geopush.api.keys\n",
    "from geopush import api\n",
    "from ..api import errors\n",
])
def test_the_check_sees_every_form_of_import(source: str):
    assert any(_reaches_api(m) for _, m in _imported_modules(source, "geopush.crm"))


def test_every_domain_error_has_one_status():
    kinds = [cls for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.DomainError)
             and cls is not errors.DomainError]
    assert kinds and all(cls in DOMAIN_STATUS for cls in kinds)
    assert domain_status(errors.NotFound("store")) == 404
    assert domain_status(errors.Invalid("lat", "must be a number")) == 400
    assert domain_status(errors.Conflict("dup", code="duplicate")) == 409


def _refusals() -> list[type[Exception]]:
    from geopush.campaigns.errors import OfferError
    from geopush.crm.csv_stream import ImportFailed
    from geopush.geo.feature_collection import FeatureCollectionError
    from geopush.geo.geometry import GeometryError
    from geopush.identity import CustomerProofError
    from geopush.insights.itemsets import TooManyItemsets
    from geopush.insights.mining_pool import QueriesBusy
    from geopush.places.geofence_import import TooManyFeatures

    return [OfferError, ImportFailed, FeatureCollectionError, GeometryError,
            CustomerProofError, TooManyItemsets, QueriesBusy, TooManyFeatures]


@pytest.mark.parametrize("kind", _refusals(), ids=lambda k: k.__name__)
def test_every_refusal_of_the_domain_is_a_domain_error(kind: type[Exception]):
    # One error model: the middleware maps these; no handler translates them by hand.
    assert issubclass(kind, errors.DomainError)


def test_no_handler_translates_a_domain_refusal_by_hand():
    names = {k.__name__ for k in _refusals()} | {
        name for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.DomainError)}
    caught = []
    for path in (PACKAGE / "api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                caught += [f"{path.name}:{node.lineno} {t.id}" for t in types
                           if isinstance(t, ast.Name) and t.id in names]
    assert not caught, caught


def test_a_refusal_raised_in_a_mining_child_comes_back_whole():
    import pickle

    from geopush.insights.itemsets import TooManyItemsets

    back = pickle.loads(pickle.dumps(TooManyItemsets(5)))
    assert (back.limit, back.code, str(back)) == (5, "too_many_itemsets", str(TooManyItemsets(5)))


def _module_graph() -> dict[str, set[str]]:
    """geopush module -> the geopush modules it imports (inside functions too). `from pkg
    import submodule` counts the submodule only, as Python loads it."""
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                subs = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
                found |= subs if len(subs) == len(node.names) else subs | {module}
        graph[name] = (found & modules.keys()) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_round_a_cycle():
    # e.g. loyalty.checkins and loyalty.rewards once imported each other.
    assert _cycles(_module_graph()) == []


def test_no_two_packages_depend_on_each_other():
    # e.g. loyalty once imported ingest.decisions while ingest.pipeline imported loyalty;
    # what both need sits beside them (`geopush.outcomes`). The shared top-level modules
    # (config, codes, errors, metrics, ...) are leaves of this picture, not packages.
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}

    def package_of(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in packages else None

    graph: dict[str, set[str]] = {}
    for module, imports in _module_graph().items():
        source = package_of(module)
        if source is None:
            continue
        graph.setdefault(source, set()).update(
            target for target in map(package_of, imports) if target not in (None, source))
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_handlers_read_the_clock_through_the_runtime():
    # `request.app[RUNTIME].now()`: one clock per process, which a test can replace.
    readers = [f"{path.name}:{n}" for path in (PACKAGE / "api").glob("*.py")
               if path.name != "runtime.py"
               for n, line in enumerate(path.read_text().splitlines(), 1)
               if "datetime.now(" in line or "datetime.utcnow(" in line]
    assert not readers, readers


# Handlers call query functions; no module of api/ holds SQL (issue 17).
_SQL_FREE_HANDLERS = sorted(p.name for p in (PACKAGE / "api").glob("*.py"))


@pytest.mark.parametrize("name", _SQL_FREE_HANDLERS)
def test_handlers_call_query_functions_and_hold_no_sql(name: str):
    import re

    text = (PACKAGE / "api" / name).read_text()
    statements = re.findall(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b", text)
    assert not statements, f"api/{name} holds SQL: {statements}"
