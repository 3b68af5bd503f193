"""The package's structure, read from its source (nothing is imported or run):

- the modules of lenet_native import each other one way, with no cycle, counting the
  imports inside functions and resolving relative ones;
- training and the pretrained loader depend on the model, never the reverse;
- the C build silences no compiler warning;
- every file the package writes goes through lenet_native.fileio.atomic_write.

Each checker is also run on a small made-up source, so that a checker that stopped seeing
what it looks for fails too.
"""
import ast
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lenet_native"


# ============================================================ the import graph


def package_modules(package_dir):
    """{dotted module name: source file} for every .py and .pyx module under package_dir."""
    modules = {}
    for path in sorted(package_dir.rglob("*")):
        if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
            continue
        parts = (package_dir.name,) + path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _target(name, modules):
    """The module that importing the dotted ``name`` loads last (its longest prefix that is a
    module of the package), or None for a module from elsewhere."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return None


# `import x` in a .pyx (cimports are compile-time and do not count)
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\s+([\w, ]+)|import\s+([\w.]+))",
                         re.MULTILINE)


def imports_of(name, path, modules):
    """[(imported module of the package, line)] of the module ``name`` in file ``path``:
    every `import` and `from ... import` anywhere in it (inside functions too), relative
    ones resolved, and importlib.import_module("...") with a constant name.

    ``from P import n`` counts as importing P.n if that is a module, else P. Importing a
    module also runs its package's __init__ first; that implicit edge is not counted (a
    package's __init__ gathering its modules' names is what it is for): a module that
    imports from its package (``from . import name`` of a name that is not a module, or
    ``import lenet_native``) depends on __init__ and is counted."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []

    def add(dotted, line):
        target = _target(dotted, modules)
        if target is not None:
            found.append((target, line))

    def from_import(level, module, names, line):
        if level:
            base = package.split(".")
            base = base[:len(base) - (level - 1)]
            full = ".".join(base + ([module] if module else []))
        else:
            full = module or ""
        for n in names:
            add(f"{full}.{n}" if n != "*" and f"{full}.{n}" in modules else full, line)

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pyx":
        for m in _PYX_IMPORT.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            if m.group(3):
                add(m.group(3), line)
            else:
                dots = len(m.group(1)) - len(m.group(1).lstrip("."))
                names = [n.strip() for n in m.group(2).split(",") if n.strip()]
                from_import(dots, m.group(1).lstrip(".") or None, names, line)
        return found
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            from_import(node.level, node.module, [a.name for a in node.names], node.lineno)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) == "import_module")):
            spec = node.args[0].value
            dots = len(spec) - len(spec.lstrip("."))
            if dots:
                from_import(dots, None, [spec.lstrip(".")], node.lineno)
            else:
                add(spec, node.lineno)
    return found


def import_graph(package_dir):
    """{module: {imported module: first line importing it}} of the package's modules."""
    modules = package_modules(package_dir)
    graph = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in imports_of(name, path, modules):
            if target != name:  # e.g. __init__'s `from . import x` of a name it defined
                edges[target] = min(line, edges.get(target, line))
    return graph


def cycles(graph):
    """Cycles [m0, m1, ..., m0] of the graph: the shortest through each module that is on
    one, without repeats (Tarjan's strongly connected parts, then breadth-first searches
    inside each part)."""
    index, low, stack, on_stack, parts = {}, {}, [], set(), []

    def connect(v):  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            parts.append(part)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found, seen = [], set()
    for part in parts:
        if len(part) == 1 and not part & set(graph.get(min(part), ())):
            continue
        for start in sorted(part):
            previous, queue = {}, [start]
            while queue and start not in previous:
                v = queue.pop(0)
                for w in sorted(graph[v]):
                    if w in part and w not in previous:
                        previous[w] = v
                        queue.append(w)
            path = [start]
            while len(path) == 1 or path[-1] != start:
                path.append(previous[path[-1]])
            path.reverse()
            k = path.index(min(path))  # written from its first module in sorted order
            path = path[k:-1] + path[:k + 1]
            edges = frozenset(zip(path, path[1:]))
            if edges not in seen:
                seen.add(edges)
                found.append(path)
    return found


def describe(cycle, graph, modules, root):
    """One line per import of the cycle: file:line imports module."""
    return "\n".join(f"  {modules[a].relative_to(root).as_posix()}:{graph[a][b]} imports {b}"
                     for a, b in zip(cycle, cycle[1:]))


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_imports_run_one_way_without_a_cycle():
    graph = import_graph(PACKAGE)
    modules = package_modules(PACKAGE)
    assert {"lenet_native", "lenet_native.model", "lenet_native._core"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles in lenet_native (function-level imports count):\n" + \
        "\n".join(" -> ".join(c) + "\n" + describe(c, graph, modules, ROOT) for c in found)


def test_training_and_the_pretrained_loader_depend_on_the_model_not_the_reverse():
    graph = import_graph(PACKAGE)
    for user in ("lenet_native.training", "lenet_native.pretrained"):
        assert "lenet_native.model" in reachable(graph, user), f"{user} does not use the model"
    from_model = reachable(graph, "lenet_native.model")
    assert not from_model & {"lenet_native", "lenet_native.training", "lenet_native.pretrained"}, \
        f"lenet_native.model reaches {sorted(from_model)}"


def _make_package(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


def test_the_import_graph_sees_every_kind_of_import(tmp_path):
    pkg = _make_package(tmp_path, {
        "pkg/__init__.py": "from .a import f\nfrom . import _ext\n",
        "pkg/a.py": "import os\nfrom . import b\ndef f():\n    from . import g\n",
        "pkg/g.py": "from . import a\n",
        "pkg/b.py": "def g():\n    from .sub.c import h\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def h():\n    from .. import a\n",
        "pkg/d.py": "import pkg.a as x\nfrom pkg import f\nimport importlib\n"
                    "e = importlib.import_module('pkg.e')\n",
        "pkg/e.py": "class E:\n    def m(self):\n        from .sub import c\n",
        "pkg/_ext.pyx": "import numpy as np\nfrom pkg cimport _decl\nfrom . import d\n",
    })
    graph = import_graph(pkg)
    assert graph == {
        "pkg": {"pkg.a": 1, "pkg._ext": 2},
        "pkg.a": {"pkg.b": 2, "pkg.g": 4},
        "pkg.g": {"pkg.a": 1},
        "pkg.b": {"pkg.sub.c": 2},
        "pkg.sub": {},
        "pkg.sub.c": {"pkg.a": 2},
        "pkg.d": {"pkg.a": 1, "pkg": 2, "pkg.e": 4},
        "pkg.e": {"pkg.sub.c": 3},
        "pkg._ext": {"pkg.d": 3},
    }
    # pkg -> _ext -> d -> pkg; and, through function-level imports, a -> b -> sub.c -> a
    # and a -> g -> a
    assert sorted(cycles(graph)) == [["pkg", "pkg._ext", "pkg.d", "pkg"],
                                     ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"],
                                     ["pkg.a", "pkg.g", "pkg.a"]]
    assert describe(["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"], graph, package_modules(pkg),
                    tmp_path).splitlines() == ["  pkg/a.py:2 imports pkg.b",
                                               "  pkg/b.py:2 imports pkg.sub.c",
                                               "  pkg/sub/c.py:2 imports pkg.a"]
    del graph["pkg.sub.c"]["pkg.a"], graph["pkg._ext"]["pkg.d"]
    assert cycles(graph) == [["pkg.a", "pkg.g", "pkg.a"]]
    del graph["pkg.a"]["pkg.g"]
    assert cycles(graph) == []


# ============================================================ the C build


def silenced_warnings(setup_source, c_sources):
    """Compiler flags in setup.py and pragmas in the C files that turn warnings off."""
    found = [f"setup.py: {node.value!r}" for node in ast.walk(ast.parse(setup_source))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and (node.value.startswith(("-Wno-", "/wd", "-diag-disable"))
                  or node.value in ("-w", "/w", "/W0"))]
    pragma = re.compile(r"#\s*pragma\s+(?:GCC|clang)\s+diagnostic\s+ignored|"
                        r"#\s*pragma\s+warning\s*\(\s*disable")
    for name, text in c_sources.items():
        for m in pragma.finditer(text):
            found.append(f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    return found


def test_the_c_build_silences_no_compiler_warning():
    c_sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8", errors="replace")
                 for p in sorted((ROOT / "csrc").glob("*.[ch]"))}
    assert c_sources
    found = silenced_warnings((ROOT / "setup.py").read_text(encoding="utf-8"), c_sources)
    assert not found, "warnings silenced instead of fixed:\n" + "\n".join(found)


def test_silenced_warnings_are_seen():
    setup = 'FLAGS = ["-O3", "-Wall", "-Wno-unused-function"]\nMSVC = ["/O2", "/wd4244"]\n'
    c = {"csrc/x.c": "int a;\n#pragma GCC diagnostic ignored \"-Wunused\"\n#pragma omp for\n"}
    assert silenced_warnings(setup, c) == ["setup.py: '-Wno-unused-function'",
                                           "setup.py: '/wd4244'",
                                           'csrc/x.c:2: #pragma GCC diagnostic ignored']
    assert silenced_warnings('FLAGS = ["-O3", "-Wall", "-Wextra"]\n', {"x.c": "#pragma omp for"}) == []


# ============================================================ writing files

# calls that create, replace or write a file by its path
_OPENERS = {"open", "io.open", "os.fdopen", "gzip.open", "bz2.open", "lzma.open", "codecs.open"}
_BY_PATH = {"os.replace", "os.rename", "os.renames", "os.open", "os.link", "os.symlink",
            "os.truncate", "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree",
            "shutil.move", "tempfile.mkstemp", "tempfile.NamedTemporaryFile"}
_PATH_METHODS = {"write_text", "write_bytes", "touch", "symlink_to", "hardlink_to", "rename"}
# serialisers that take a path or a file object (-> the position of that argument): fine
# when handed atomic_write's file or an in-memory buffer
_SERIALISERS = {"numpy.save": 0, "numpy.savez": 0, "numpy.savez_compressed": 0,
                "numpy.savetxt": 0, "onnx.save": 1, "onnx.save_model": 1, "torch.save": 1,
                "torch.onnx.export": 2}
_SERIALISER_METHODS = {"savefig", "tofile"}
_COMPRESSED_FILES = {"gzip.GzipFile", "bz2.BZ2File", "lzma.LZMAFile"}


def _aliases(tree):
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(func, aliases):
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([aliases.get(func.id, func.id)] + parts[::-1])


def _writes_mode(call, position, computed_may_write=True):
    mode = next((k.value for k in call.keywords if k.arg == "mode"),
                call.args[position] if len(call.args) > position else None)
    if mode is None:
        return False
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(c in mode.value for c in "wax+")
    return computed_may_write  # a mode computed at run time may write


def direct_writes(source, filename="<source>"):
    """["file:line: call"] for every place in ``source`` that writes a file other than
    through atomic_write: opening for writing, writing / replacing / copying by path, and
    serialisers (np.save, savefig, ...) given anything but the file object that
    atomic_write hands its writer (a parameter of a function or lambda passed to it) or an
    in-memory buffer (a name assigned an io.BytesIO() / StringIO()). ``x.open(...)`` of
    anything but a known opener counts when its mode is a constant that writes (it may be
    Path.open; Image.open(path) and ZipFile.open(name) read)."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    buffers = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Call)
               and (_dotted(node.value.func, aliases) or "").endswith(("BytesIO", "StringIO"))
               for t in node.targets if isinstance(t, ast.Name)}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    # writers handed to atomic_write: lambdas in the call, and functions named in it
    callbacks, callback_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_dotted(node.func, aliases) or "").endswith("atomic_write"):
            for arg in node.args[1:] + [k.value for k in node.keywords]:
                if isinstance(arg, ast.Lambda):
                    callbacks.add(arg)
                elif isinstance(arg, ast.Name):
                    callback_names.add(arg.id)

    def handed_file(node, arg):
        if not isinstance(arg, ast.Name):
            return False
        if arg.id in buffers:
            return True
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    node in callbacks or getattr(node, "name", None) in callback_names):
                a = node.args
                if arg.id in [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]:
                    return True
        return False

    found = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset)):
        name = _dotted(node.func, aliases)
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if name in _OPENERS:
            bad = _writes_mode(node, 1)
        elif method == "open" and name not in _COMPRESSED_FILES:
            bad = _writes_mode(node, 0, computed_may_write=False)
        elif name in _COMPRESSED_FILES:
            bad = (_writes_mode(node, 1) and not any(k.arg == "fileobj" for k in node.keywords)
                   and len(node.args) < 4)
        elif name in _BY_PATH or method in _PATH_METHODS:
            bad = True
        elif method == "replace":  # Path.replace(target); str.replace takes two arguments
            bad = len(node.args) == 1 and not node.keywords
        elif name in _SERIALISERS or method in _SERIALISER_METHODS:
            position = _SERIALISERS.get(name, 0)
            destination = next((k.value for k in node.keywords if k.arg in ("file", "fname", "f")),
                               node.args[position] if len(node.args) > position else None)
            bad = not handed_file(node, destination)
        else:
            bad = False
        if bad:
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_the_package_writes_files_only_through_fileio():
    fileio = PACKAGE / "fileio.py"
    assert "def atomic_write(" in fileio.read_text(encoding="utf-8")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != fileio:
            found += direct_writes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "files written without lenet_native.fileio.atomic_write:\n" + "\n".join(found)


def test_direct_writes_are_seen():
    source = textwrap.dedent("""\
        import io, os, shutil
        import numpy as np
        import torch
        from pathlib import Path
        from PIL import Image
        from . import fileio
        from .fileio import atomic_write

        def fine(path, arrays, fig, zf, info, net):
            fileio.atomic_write(path, lambda f: np.savez(f, **arrays))
            atomic_write(path, lambda fh: fig.savefig(fh, format="png"))

            def write(f):
                np.save(f, arrays["a"])
            fileio.atomic_write(path, write)
            with open(path, "rb") as f, Path(path).open() as g, Image.open(path) as h:
                zf.open(info).read()
            buf = io.BytesIO()
            torch.onnx.export(net, (), buf)
            "a-b".replace("-", "_")

        def bad(path, arrays, fig, mode, net):
            np.savez(path, **arrays)
            fig.savefig(path)
            with open(path, "w") as f:
                pass
            open(path, mode=mode)
            Path(path).open("ab")
            Path(path).write_text("x")
            os.replace(path + ".tmp", path)
            Path(path).replace(path)
            shutil.copyfile(path, path)
            fileio.atomic_write(path, lambda f: np.save(path, arrays))
            torch.onnx.export(net, (), path)
        """)
    assert direct_writes(source, "m.py") == [
        "m.py:23: np.savez(...)", "m.py:24: fig.savefig(...)", "m.py:25: open(...)",
        "m.py:27: open(...)", "m.py:28: Path(path).open(...)",
        "m.py:29: Path(path).write_text(...)", "m.py:30: os.replace(...)",
        "m.py:31: Path(path).replace(...)", "m.py:32: shutil.copyfile(...)",
        "m.py:33: np.save(...)", "m.py:34: torch.onnx.export(...)"]


def test_the_python_and_cmake_builds_compile_the_same_c_sources():
    """setup.py (the extension) and CMakeLists.txt (liblenet) list their C files by hand: each
    kernel file under csrc/ must be in both, so the two builds never drift apart."""
    root = Path(__file__).resolve().parents[1]
    setup_py = (root / "setup.py").read_text()
    cmake = (root / "CMakeLists.txt").read_text()
    kernels = sorted(p.relative_to(root).as_posix() for p in (root / "csrc").glob("*.c"))
    only_cmake = {"csrc/api.c"}                     # the public C API: liblenet only
    assert kernels, "no C sources found"
    missing = [f for f in kernels if f not in only_cmake and f"\"{f}\"" not in setup_py]
    missing += [f"CMakeLists.txt: {f}" for f in kernels if f not in cmake]
    assert not missing, f"C files missing from a build: {missing}"
