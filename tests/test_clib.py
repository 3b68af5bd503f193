"""liblenet, the C library (issue 14): built with CMake into a temporary folder once per
session, then

- lenet-classify on the shipped sample digits: labels and outputs against LeNet5.forward,
  bit for bit at the same instruction-set variant (IDX and PGM input);
- tests/c/check_api.c linked against the static and the shared library: API edge cases,
  uint8 == preprocess + float, many threads on one model, every variant's outputs;
- the corruption sweep: every truncation of a .lenet file, flipped bytes, crafted damage
  (conftest.lenet_mutants), each refused with the expected status, in one C process;
- the one-file .c export compiled with -std=c99 -pedantic -Werror and with g++: the same
  labels as Python, outputs to float rounding (bit for bit against the portable variant
  when compiled as C99 here);
- cmake --install: header, libraries, pkg-config and the CMake package, each used to build
  the README's ten-line program.

Skipped, with the reason, without cmake or a C compiler. The build compiles only the SIMD
variant Python uses (plus the portable code) to stay quick.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import lenet_mutants, child_env
import lenet_native
from lenet_native import _core, load_pretrained, preprocess
from lenet_native.idx import write_idx
from lenet_native.layout import C3_IN, C3_OUT

ROOT = Path(__file__).resolve().parents[1]
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
CXX = shutil.which("g++") or shutil.which("clang++")
CMAKE = shutil.which("cmake")

pytestmark = [
    pytest.mark.skipif(CMAKE is None, reason="cmake is not installed (pip install cmake)"),
    pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH"),
]


def run(cmd, **kw):
    """Run a command; on failure, fail the test with its output."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {res.returncode}\n{res.stdout[-3000:]}\n"
                    f"{res.stderr[-3000:]}")
    return res




@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The CMake build (Release, the default ISA's variant only) and its install."""
    tmp = tmp_path_factory.mktemp("clib")
    build, prefix = tmp / "build", tmp / "prefix"
    isa = _core.default_isa()
    variants = "" if isa == "portable" else isa
    run([CMAKE, "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DLENET_VARIANTS={variants}",
         f"-DPython3_EXECUTABLE={sys.executable}", f"-DCMAKE_C_COMPILER={CC}"], env=child_env())
    run([CMAKE, "--build", build, "-j", "2"], env=child_env())
    run([CMAKE, "--install", build, "--prefix", prefix])
    return {"build": build, "prefix": prefix, "tmp": tmp, "isa": isa}


@pytest.fixture(scope="session")
def sample_files(built, mnist_test_sample):
    """The sample digits as an IDX file, the shipped models as .lenet files."""
    tmp = built["tmp"]
    images, labels = mnist_test_sample
    write_idx(tmp / "sample-images-idx3-ubyte", images)
    files = {"idx": tmp / "sample-images-idx3-ubyte", "images": images, "labels": labels}
    for head in ("softmax", "rbf"):
        load_pretrained(head).save(tmp / f"{head}.lenet")
        files[head] = tmp / f"{head}.lenet"
    return files


def parse_outputs(text):
    rows = [line.split() for line in text.splitlines()]
    labels = np.array([int(r[0]) for r in rows])
    outputs = np.array([[np.float32(float(v)) for v in r[1:]] for r in rows], np.float32)
    return labels, outputs


def compile_program(built, name, sources, static):
    """tests/c or examples/c sources linked against the built static or shared library."""
    build = built["build"]
    exe = built["tmp"] / name
    libs = ([build / "liblenet.a", "-fopenmp"] if static else
            [f"-L{build}", "-llenet", f"-Wl,-rpath,{build}"])
    run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc'}",
         f"-I{ROOT / 'examples' / 'c'}", *sources, *libs, "-pthread", "-lm", "-o", exe])
    return exe


def test_build_products(built):
    build = built["build"]
    for name in ("liblenet.a", "liblenet.so", "lenet-classify", "lenet-export-classify"):
        assert (build / name).exists(), name
    nm = shutil.which("nm")
    if nm:   # only the public API is exported from the shared library
        out = run([nm, "-D", "--defined-only", build / "liblenet.so"]).stdout
        symbols = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
        header = (ROOT / "csrc" / "lenet_native.h").read_text()
        assert symbols and all(f"{s}(" in header for s in symbols), sorted(symbols)
        assert "lenet_forward" not in symbols and "lenet_model_load" in symbols


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_classify_matches_forward_bit_for_bit(built, sample_files, head):
    model = load_pretrained(head)
    res = run([built["build"] / "lenet-classify", "--outputs", "--isa", built["isa"],
               "--threads", "2", sample_files[head], sample_files["idx"]])
    labels, outputs = parse_outputs(res.stdout)
    want = model.forward(preprocess(sample_files["images"]))
    np.testing.assert_array_equal(outputs, want)
    np.testing.assert_array_equal(labels, model.predict(sample_files["images"]))
    assert (labels == sample_files["labels"]).mean() > 0.98


def test_classify_pgm_and_time(built, sample_files):
    images = sample_files["images"][:7]
    pgm = built["tmp"] / "seven.pgm"
    pgm.write_bytes(b"".join(b"P5\n# digit %d\n28 28\n255\n" % i + im.tobytes() for i, im in enumerate(images)))
    res = run([built["build"] / "lenet-classify", "--time", sample_files["softmax"], pgm])
    labels = [int(v) for v in res.stdout.split()]
    assert labels == load_pretrained("softmax").predict(images).tolist()
    assert "median" in res.stderr and "images/s" in res.stderr
    bad = subprocess.run([built["build"] / "lenet-classify", sample_files["softmax"], built["build"] / "liblenet.a"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "neither" in bad.stderr


@pytest.mark.parametrize("static", [True, False], ids=["static", "shared"])
def test_api_checks(built, sample_files, static):
    exe = compile_program(built, f"check_api_{'a' if static else 'so'}", [ROOT / "tests" / "c" / "check_api.c"], static)
    for head in ("softmax", "rbf"):
        assert run([exe, "api", sample_files[head], sample_files["idx"]]).stdout.strip() == "api ok"


def test_every_built_variant_matches_python(built, sample_files):
    exe = compile_program(built, "check_api_variants", [ROOT / "tests" / "c" / "check_api.c"], False)
    images = sample_files["images"][:100]
    idx = built["tmp"] / "hundred-idx3-ubyte"
    write_idx(idx, images)
    model = load_pretrained("softmax")
    for isa in sorted({"portable", built["isa"]}):
        out = run([exe, "outputs", sample_files["softmax"], idx, isa]).stdout
        got = np.array([[float.fromhex(v) for v in line.split()] for line in out.splitlines()], np.float32)
        want = _core.forward(model._flat, C3_OUT, C3_IN, "softmax", preprocess(images), 1, isa=isa)
        np.testing.assert_array_equal(got, want, err_msg=isa)


def test_corrupt_files_refused_by_c(built, sample_files):
    """One process: every truncation, header/table bytes flipped one by one (two ways) and
    every 499th byte after, then each crafted file loaded by path with its status."""
    exe = compile_program(built, "check_api_sweep", [ROOT / "tests" / "c" / "check_api.c"], False)
    for head in ("softmax", "rbf"):
        model = load_pretrained(head)
        model.meta = {}          # a short metadata block: the table region is swept byte by byte
        small = built["tmp"] / f"{head}-nometa.lenet"
        model.save(small)
        mutants = lenet_mutants(small.read_bytes(), head)
        folder = built["tmp"] / f"mutants-{head}"
        folder.mkdir(exist_ok=True)
        for name, (data, _) in mutants.items():
            (folder / f"{name}.lenet").write_bytes(data)
        res = run([exe, "sweep", small, 499, *(folder / f"{name}.lenet" for name in mutants)])
        lines = res.stdout.splitlines()
        assert lines[0] == f"truncations {len(small.read_bytes())} accepted 0"
        assert lines[1].startswith("flips ") and lines[1].endswith(" accepted 0")
        statuses = {Path(p).stem: int(s) for p, s in (line.split() for line in lines[2:])}
        assert statuses == {name: status for name, (_, status) in mutants.items()}


def test_c_export_compiles_strictly_and_agrees(built, sample_files):
    tmp = built["tmp"] / "export"
    tmp.mkdir()
    images = sample_files["images"]
    main_c = ROOT / "examples" / "c" / "export_classify.c"
    for head in ("softmax", "rbf"):
        stem = f"lenet5_{head}"
        run([sys.executable, "-m", "lenet_native", "export", "--pretrained", head, tmp / f"{stem}.c"],
            env=child_env(), cwd=tmp)   # not the checkout's folder: -m puts the cwd first
        flags = [f"-DLENET_EXPORT_HEADER=\"{stem}.h\"", f"-DLENET_EXPORT_STEM={stem}", f"-I{tmp}",
                 f"-I{ROOT / 'examples' / 'c'}"]
        run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", *flags, main_c,
             tmp / f"{stem}.c", "-lm", "-o", tmp / f"{stem}-c"])
        compilers = [("c", tmp / f"{stem}-c")]
        if CXX:
            run([CXX, "-Wall", "-Wextra", "-Werror", "-O2", "-x", "c++", *flags, main_c,
                 tmp / f"{stem}.c", "-o", tmp / f"{stem}-cxx"])
            compilers.append(("c++", tmp / f"{stem}-cxx"))
        model = load_pretrained(head)
        portable = _core.forward(model._flat, C3_OUT, C3_IN, head, preprocess(images), 1,
                                 isa="portable")
        for lang, exe in compilers:
            labels, outputs = parse_outputs(run([exe, "--outputs", sample_files["idx"]]).stdout)
            np.testing.assert_array_equal(labels, model.predict(images), err_msg=lang)
            np.testing.assert_allclose(outputs, model.forward(preprocess(images)), rtol=1e-5,
                                       atol=1e-5 * np.abs(portable).max(), err_msg=lang)
            if lang == "c":   # C99 mode contracts no multiply-add: the portable kernels' bits
                np.testing.assert_array_equal(outputs, portable)
    header = (tmp / "lenet5_softmax.h").read_text()
    assert "static constant weights" in header and "stack" in header
    assert "malloc" not in (tmp / "lenet5_softmax.c").read_text()


def test_installed_package_builds_the_readme_program(built, sample_files):
    prefix, tmp = built["prefix"], built["tmp"]
    assert (prefix / "include" / "lenet_native.h").is_file()
    libdir = next(p for p in (prefix / "lib", prefix / "lib64") if (p / "liblenet.a").exists())
    assert (libdir / "pkgconfig" / "lenet.pc").is_file()
    assert (libdir / "cmake" / "lenet" / "lenetConfig.cmake").is_file()
    assert (libdir / "cmake" / "lenet" / "lenetConfigVersion.cmake").is_file()
    program = ROOT / "examples" / "c" / "minimal.c"
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))
    exes = []
    pkg_config = shutil.which("pkg-config")
    if pkg_config:
        flags = run([pkg_config, "--cflags", "--libs", "lenet"], env=env).stdout.split()
        exe = tmp / "minimal-pkgconfig"
        run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", program, *flags, f"-Wl,-rpath,{libdir}", "-o", exe])
        exes.append(exe)
    consumer = tmp / "consumer"
    consumer.mkdir()
    (consumer / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(consumer C)\nfind_package(lenet 0.1 REQUIRED)\n"
        f"add_executable(minimal \"{program.as_posix()}\")\n"
        "target_link_libraries(minimal PRIVATE lenet::lenet_static)\n")
    run([CMAKE, "-S", consumer, "-B", consumer / "build", f"-DCMAKE_PREFIX_PATH={prefix}",
         f"-DCMAKE_C_COMPILER={CC}"])
    run([CMAKE, "--build", consumer / "build"])
    exes.append(consumer / "build" / "minimal")
    want = load_pretrained("softmax").predict(sample_files["images"][:10]).tolist()
    for exe in exes:
        out = run([exe, sample_files["softmax"], sample_files["idx"]]).stdout.split()
        assert [int(v) for v in out] == want, exe
