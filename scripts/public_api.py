#!/usr/bin/env python3
"""Renders cmek's public API from rustdoc JSON as a sorted text listing.

Usage: public_api.py CRATE_JSON

Reads the JSON that `cargo rustdoc -- -Z unstable-options --output-format
json` writes, walks the crate from its root module through public items and
re-exports, and prints one line per item to stdout, sorted, with the number
of items on stderr. `scripts/public-api` builds the JSON and calls this.

Each item is listed once, under its canonical path: the path at which it is
defined if that path is public, otherwise its deepest public re-export (ties
broken by name). Every other public path to it is a `reexport` line. Types
are written with the canonical paths of this crate's items and the defining
paths of other crates' items (`core::fmt::Debug`, not `fmt::Debug`), so the
listing does not change with `use` statements. Prelude names are written
bare (`Option`, `Result`, `Vec`, `String`, `Box`, `Send`, ...).

Each line starts with the item's kind:
  mod, struct (with tuple fields inline), field (public named fields),
  enum, variant (with its fields), union, fn (free functions), method and
  assoc-const / assoc-type (inherent associated items), trait (with
  `[sealed]` or `[open]`, see below, and `[dyn-compatible]`), trait-fn /
  trait-type / trait-const (a trait's items; `(provided)` when it has a
  default), impl (trait impls, with their associated types and constants),
  const, static, type, macro, reexport.
A type's or trait's members are indented under it. A method of a generic
impl ends with the impl it is in, `(in impl<R: Read> Reader<R>)`. A struct
with private fields ends with `{ /* private fields */ }`; `#[non_exhaustive]`
and `#[deprecated]` end the line of the item they mark.

Trait impls include std's (Clone, Debug, From, Error, ...) and the auto
traits Send, Sync, Unpin, UnwindSafe and RefUnwindSafe. Left out: blanket
impls from other crates (`impl<T> From<T> for T` and the like), the
unstable marker traits rustc implements on its own (Freeze, UnsafeUnpin,
StructuralPartialEq), and impls of traits that are not public.

A trait is `[sealed]` when it looks sealed: a supertrait, or a type in one
of its items' signatures, belongs to this crate but is not public, so no
other crate can implement it. Otherwise it is `[open]`.

`#[doc(hidden)]` items are left out (rustdoc already strips them; they are
also skipped here if an attribute says so).
"""

import json
import re
import sys
from collections import Counter, defaultdict

# The rustdoc JSON format versions this script understands. rustdoc bumps the
# number on every breaking change to the format; a version not listed here
# stops the script rather than risk a silently wrong listing.
SUPPORTED_FORMAT_VERSIONS = {57}

# Traits rustc implements on its own that stable Rust cannot name.
SKIPPED_TRAITS = {
    ("core", "marker", "Freeze"),
    ("core", "marker", "UnsafeUnpin"),
    ("core", "marker", "StructuralPartialEq"),
}

# Items in the standard prelude, written by their bare name.
PRELUDE = {
    ("core", "option", "Option"): "Option",
    ("core", "result", "Result"): "Result",
    ("alloc", "vec", "Vec"): "Vec",
    ("alloc", "string", "String"): "String",
    ("alloc", "boxed", "Box"): "Box",
    ("alloc", "borrow", "ToOwned"): "ToOwned",
    ("alloc", "string", "ToString"): "ToString",
    ("core", "marker", "Send"): "Send",
    ("core", "marker", "Sync"): "Sync",
    ("core", "marker", "Sized"): "Sized",
    ("core", "marker", "Copy"): "Copy",
    ("core", "marker", "Unpin"): "Unpin",
    ("core", "clone", "Clone"): "Clone",
    ("core", "default", "Default"): "Default",
    ("core", "cmp", "PartialEq"): "PartialEq",
    ("core", "cmp", "Eq"): "Eq",
    ("core", "cmp", "PartialOrd"): "PartialOrd",
    ("core", "cmp", "Ord"): "Ord",
    ("core", "convert", "From"): "From",
    ("core", "convert", "Into"): "Into",
    ("core", "convert", "TryFrom"): "TryFrom",
    ("core", "convert", "TryInto"): "TryInto",
    ("core", "convert", "AsRef"): "AsRef",
    ("core", "convert", "AsMut"): "AsMut",
    ("core", "iter", "traits", "iterator", "Iterator"): "Iterator",
    ("core", "iter", "traits", "collect", "IntoIterator"): "IntoIterator",
    ("core", "iter", "traits", "collect", "Extend"): "Extend",
    ("core", "iter", "traits", "collect", "FromIterator"): "FromIterator",
    ("core", "ops", "drop", "Drop"): "Drop",
    ("core", "ops", "function", "Fn"): "Fn",
    ("core", "ops", "function", "FnMut"): "FnMut",
    ("core", "ops", "function", "FnOnce"): "FnOnce",
}

# How an item kind of the JSON is named in the listing, where they differ.
KIND_WORDS = {
    "module": "mod",
    "function": "fn",
    "constant": "const",
    "type_alias": "type",
    "trait_alias": "trait-alias",
}

# Order of a type's members under its own line.
SECTION = {
    "field": 1,
    "variant": 1,
    "assoc-const": 2,
    "assoc-type": 2,
    "method": 3,
    "trait-const": 2,
    "trait-type": 2,
    "trait-fn": 3,
    "impl": 4,
}

# How each `Abi` variant is written in source (`Rust` is left unwritten).
ABI_NAMES = {
    "C": "C",
    "Cdecl": "cdecl",
    "Stdcall": "stdcall",
    "Fastcall": "fastcall",
    "Aapcs": "aapcs",
    "Win64": "win64",
    "SysV64": "sysv64",
    "System": "system",
}

HIDDEN_ATTR = re.compile(r"\bdoc\b.*\bhidden\b", re.S)


class FormatError(Exception):
    """The JSON does not have the shape this script was written for."""


def one_key(value, what):
    """The variant name and payload of a serde externally tagged enum."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.items()))
    raise FormatError(f"unexpected {what}: {json.dumps(value)[:200]}")


class Api:
    def __init__(self, krate):
        version = krate.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            supported = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
            raise FormatError(
                f"rustdoc JSON format_version {version} is not supported "
                f"(supported: {supported}); update scripts/public_api.py "
                "for the new format"
            )
        self.format_version = version
        self.index = krate["index"]
        self.paths = krate["paths"]
        self.root = str(krate["root"])
        self.crate_name = self.index[self.root]["name"]
        # id -> list of (path tuple, defined there rather than re-exported)
        self.found = defaultdict(list)
        # lines for re-exports whose target is outside the index
        self.external_reexports = []
        self.canonical = {}
        self.lines = []  # (sort key, text)
        self.kinds = Counter()
        self.seen_impls = set()

    # ----- reachability -------------------------------------------------

    def item(self, item_id):
        return self.index.get(str(item_id))

    @staticmethod
    def kind(item):
        return one_key(item["inner"], "item kind")[0]

    @staticmethod
    def hidden(item):
        for attr in item.get("attrs", []):
            name, value = one_key(attr, "attribute")
            if name == "other" and HIDDEN_ATTR.search(value):
                return True
        return False

    def walk(self, module_id, prefix, direct, stack):
        """Records the public paths under a module. `direct`: no re-export on the way."""
        module = self.item(module_id)
        if module_id in stack:
            return
        stack = stack | {module_id}
        for child_id in module["inner"]["module"]["items"]:
            child = self.item(child_id)
            if child is None:
                raise FormatError(f"module item {child_id} missing from the index")
            if child["visibility"] != "public" or self.hidden(child):
                continue
            kind = self.kind(child)
            if kind == "use":
                self.walk_use(child["inner"]["use"], prefix, stack)
            elif kind == "module":
                path = prefix + (child["name"],)
                self.found[str(child_id)].append((path, direct))
                self.walk(str(child_id), path, direct, stack)
            elif kind == "impl":
                continue
            else:
                self.found[str(child_id)].append((prefix + (child["name"],), direct))

    def walk_use(self, use, prefix, stack):
        target_id = use["id"]
        target = self.item(target_id) if target_id is not None else None
        if use["is_glob"]:
            if target is not None and self.kind(target) == "module":
                self.walk(str(target_id), prefix, False, stack)
            elif target is not None and self.kind(target) == "enum":
                for variant_id in target["inner"]["enum"]["variants"]:
                    variant = self.item(variant_id)
                    self.found[str(variant_id)].append((prefix + (variant["name"],), False))
            else:
                self.external_reexports.append(
                    (prefix + ("*",), self.external_path(target_id, use["source"]))
                )
            return
        path = prefix + (use["name"],)
        if target is None:
            self.external_reexports.append((path, self.external_path(target_id, use["source"])))
            return
        if self.hidden(target):
            return
        self.found[str(target_id)].append((path, False))
        if self.kind(target) == "module":
            self.walk(str(target_id), path, False, stack)

    def external_path(self, item_id, written):
        summary = self.paths.get(str(item_id)) if item_id is not None else None
        if summary is None:
            return written
        return "::".join(summary["path"])

    def choose_canonical(self):
        for item_id, paths in self.found.items():
            # Defined there first, then the deepest path, then by name.
            paths = sorted(set(paths), key=lambda p: (not p[1], -len(p[0]), p[0]))
            self.canonical[item_id] = paths[0][0]

    # ----- names and types ----------------------------------------------

    def name_of(self, item_id, written):
        """The path a type or trait reference is written with."""
        key = str(item_id)
        if key in self.canonical:
            return "::".join(self.canonical[key])
        summary = self.paths.get(key)
        if summary is None:
            return written
        path = tuple(summary["path"])
        if summary["crate_id"] != 0 and path in PRELUDE:
            return PRELUDE[path]
        return "::".join(path)

    def is_private_local(self, item_id):
        if item_id is None:
            return False
        key = str(item_id)
        summary = self.paths.get(key)
        item = self.item(key)
        crate_id = summary["crate_id"] if summary else (item["crate_id"] if item else None)
        return crate_id == 0 and key not in self.canonical

    def path_ref(self, path):
        return self.name_of(path["id"], path["path"]) + self.args(path.get("args"))

    def args(self, args):
        if args is None:
            return ""
        name, body = one_key(args, "generic args")
        if name == "angle_bracketed":
            parts = [self.generic_arg(a) for a in body["args"]]
            parts += [self.constraint(c) for c in body["constraints"]]
            return "<" + ", ".join(parts) + ">" if parts else ""
        if name == "parenthesized":
            text = "(" + ", ".join(self.ty(t) for t in body["inputs"]) + ")"
            if body["output"] is not None:
                text += " -> " + self.ty(body["output"])
            return text
        if name == "return_type_notation":
            return "(..)"
        raise FormatError(f"unknown generic args kind {name!r}")

    def generic_arg(self, arg):
        name, body = one_key(arg, "generic arg")
        if name == "lifetime":
            return body
        if name == "type":
            return self.ty(body)
        if name == "const":
            return self.constant(body)
        if name == "infer":
            return "_"
        raise FormatError(f"unknown generic arg kind {name!r}")

    @staticmethod
    def constant(const):
        return const["expr"]

    def constraint(self, constraint):
        text = constraint["name"] + self.args(constraint.get("args"))
        name, body = one_key(constraint["binding"], "associated item constraint")
        if name == "equality":
            return text + " = " + self.term(body)
        if name == "constraint":
            return text + ": " + self.bounds(body)
        raise FormatError(f"unknown constraint kind {name!r}")

    def term(self, term):
        name, body = one_key(term, "term")
        if name == "type":
            return self.ty(body)
        if name == "constant":
            return self.constant(body)
        raise FormatError(f"unknown term kind {name!r}")

    def bounds(self, bounds):
        return " + ".join(self.bound(b) for b in bounds)

    def bound(self, bound):
        name, body = one_key(bound, "generic bound")
        if name == "trait_bound":
            modifier = {"none": "", "maybe": "?", "maybe_const": "~const "}.get(body["modifier"])
            if modifier is None:
                raise FormatError(f"unknown trait bound modifier {body['modifier']!r}")
            return self.hrtb(body["generic_params"]) + modifier + self.path_ref(body["trait"])
        if name == "outlives":
            return body
        if name == "use":
            return "use<" + ", ".join(one_key(a, "precise capturing arg")[1] for a in body) + ">"
        raise FormatError(f"unknown generic bound kind {name!r}")

    def hrtb(self, params):
        if not params:
            return ""
        return "for<" + ", ".join(self.param(p) for p in params) + "> "

    def ty(self, ty):
        name, body = one_key(ty, "type")
        if name == "resolved_path":
            return self.path_ref(body)
        if name == "dyn_trait":
            parts = [self.hrtb(p["generic_params"]) + self.path_ref(p["trait"]) for p in body["traits"]]
            if body["lifetime"] is not None:
                parts.append(body["lifetime"])
            return "dyn " + " + ".join(parts)
        if name in ("generic", "primitive"):
            return body
        if name == "function_pointer":
            return self.hrtb(body["generic_params"]) + self.header(body["header"]) + "fn" + self.signature(
                body["sig"], fn_pointer=True
            )
        if name == "tuple":
            inner = ", ".join(self.ty(t) for t in body)
            return "(" + inner + ("," if len(body) == 1 else "") + ")"
        if name == "slice":
            return "[" + self.ty(body) + "]"
        if name == "array":
            return "[" + self.ty(body["type"]) + "; " + body["len"] + "]"
        if name == "pat":
            return self.ty(body["type"]) + " is _"
        if name == "impl_trait":
            return "impl " + self.bounds(body)
        if name == "infer":
            return "_"
        if name == "raw_pointer":
            return ("*mut " if body["is_mutable"] else "*const ") + self.pointee(body["type"])
        if name == "borrowed_ref":
            text = "&"
            if body["lifetime"] is not None:
                text += body["lifetime"] + " "
            if body["is_mutable"]:
                text += "mut "
            return text + self.pointee(body["type"])
        if name == "qualified_path":
            self_type = self.ty(body["self_type"])
            if body["trait"] is None or one_key(body["self_type"], "type")[0] == "generic":
                base = self_type
            else:
                base = "<" + self_type + " as " + self.path_ref(body["trait"]) + ">"
            return base + "::" + body["name"] + self.args(body.get("args"))
        raise FormatError(f"unknown type kind {name!r}")

    def pointee(self, ty):
        """A referenced type, in parentheses if it is a `dyn` or `impl` with several bounds."""
        text = self.ty(ty)
        name, body = one_key(ty, "type")
        several = (name == "dyn_trait" and len(body["traits"]) + (body["lifetime"] is not None) > 1) or (
            name == "impl_trait" and len(body) > 1
        )
        return "(" + text + ")" if several else text

    # ----- generics and signatures ----------------------------------------

    def param(self, param):
        name, body = one_key(param["kind"], "generic parameter kind")
        if name == "lifetime":
            text = param["name"]
            if body["outlives"]:
                text += ": " + " + ".join(body["outlives"])
            return text
        if name == "type":
            text = param["name"]
            if body["bounds"]:
                text += ": " + self.bounds(body["bounds"])
            if body["default"] is not None:
                text += " = " + self.ty(body["default"])
            return text
        if name == "const":
            text = "const " + param["name"] + ": " + self.ty(body["type"])
            if body["default"] is not None:
                text += " = " + body["default"]
            return text
        raise FormatError(f"unknown generic parameter kind {name!r}")

    def params(self, generics):
        shown = []
        for p in generics["params"]:
            kind, body = one_key(p["kind"], "generic parameter kind")
            if kind == "type" and body["is_synthetic"]:
                continue  # an `impl Trait` argument, shown in its place
            shown.append(self.param(p))
        return "<" + ", ".join(shown) + ">" if shown else ""

    def where(self, generics):
        preds = []
        for pred in generics["where_predicates"]:
            name, body = one_key(pred, "where predicate")
            if name == "bound_predicate":
                preds.append(
                    self.hrtb(body["generic_params"]) + self.ty(body["type"]) + ": " + self.bounds(body["bounds"])
                )
            elif name == "lifetime_predicate":
                preds.append(body["lifetime"] + ": " + " + ".join(body["outlives"]))
            elif name == "eq_predicate":
                preds.append(self.ty(body["lhs"]) + " == " + self.term(body["rhs"]))
            else:
                raise FormatError(f"unknown where predicate kind {name!r}")
        return " where " + ", ".join(preds) if preds else ""

    @staticmethod
    def header(header):
        text = ""
        if header["is_const"]:
            text += "const "
        if header["is_async"]:
            text += "async "
        if header["is_unsafe"]:
            text += "unsafe "
        abi, body = one_key(header["abi"], "abi")
        if abi == "Other":
            text += f"extern {body} "
        elif abi != "Rust":
            name = ABI_NAMES.get(abi)
            if name is None:
                raise FormatError(f"unknown ABI {abi!r}")
            unwind = "-unwind" if body and body.get("unwind") else ""
            text += f'extern "{name}{unwind}" '
        return text

    def signature(self, sig, fn_pointer=False):
        inputs = []
        for name, ty in sig["inputs"]:
            if name == "self":
                inputs.append(self.self_param(ty))
            elif fn_pointer and name in ("", "_"):
                inputs.append(self.ty(ty))  # an unnamed function pointer argument
            else:
                inputs.append(f"{name}: {self.ty(ty)}")
        if sig["is_c_variadic"]:
            inputs.append("...")
        text = "(" + ", ".join(inputs) + ")"
        if sig["output"] is not None:
            text += " -> " + self.ty(sig["output"])
        return text

    def self_param(self, ty):
        name, body = one_key(ty, "type")
        if name == "generic" and body == "Self":
            return "self"
        if name == "borrowed_ref" and body["type"] == {"generic": "Self"}:
            text = "&"
            if body["lifetime"] is not None:
                text += body["lifetime"] + " "
            if body["is_mutable"]:
                text += "mut "
            return text + "self"
        return "self: " + self.ty(ty)

    def function(self, path, func):
        """`[const] [async] [unsafe] [extern "abi"] path<generics>(inputs) -> output where ...`"""
        return (
            self.header(func["header"])
            + path
            + self.params(func["generics"])
            + self.signature(func["sig"])
            + self.where(func["generics"])
        )

    # ----- emitting ---------------------------------------------------------

    def emit(self, owner, section, kind, text, indent=False):
        self.kinds[kind] += 1
        # An impl line starts with its own `impl` keyword.
        line = ("  " if indent else "") + (text if kind == "impl" else kind + " " + text)
        self.lines.append(((owner, section, text), line))

    @staticmethod
    def attrs(item):
        """The attributes that matter to users of an item, as a line suffix."""
        text = ""
        for attr in item.get("attrs", []):
            if attr == "non_exhaustive":
                text += " #[non_exhaustive]"
        if item.get("deprecation") is not None:
            text += " #[deprecated]"
        return text

    def run(self):
        root_path = (self.crate_name,)
        self.found[self.root].append((root_path, True))
        self.walk(self.root, root_path, True, frozenset())
        self.choose_canonical()

        for item_id in sorted(self.canonical, key=lambda i: self.canonical[i]):
            self.emit_item(item_id)
        for item_id, paths in sorted(self.found.items(), key=lambda kv: self.canonical[kv[0]]):
            canonical = self.canonical[item_id]
            kind = self.kind(self.item(item_id))
            for path in sorted({p for p, _ in paths}):
                if path != canonical:
                    self.emit(
                        path,
                        0,
                        "reexport",
                        "::".join(path) + " = " + KIND_WORDS.get(kind, kind) + " " + "::".join(canonical),
                    )
        for path, target in sorted(self.external_reexports):
            self.emit(path, 0, "reexport", "::".join(path) + " = " + target)
        # Impls defined in this crate that no public type or trait lists: a
        # foreign trait on a foreign type that names a public type.
        for key in sorted(self.index, key=int):
            item = self.index[key]
            if item["crate_id"] == 0 and self.kind(item) == "impl":
                self.emit_impl(key, owner=None)

        self.lines.sort(key=lambda kl: (kl[0][0], kl[0][1], kl[0][2]))
        return [line for _, line in self.lines]

    def emit_item(self, item_id):
        item = self.item(item_id)
        path_t = self.canonical[item_id]
        path = "::".join(path_t)
        kind, inner = one_key(item["inner"], "item kind")
        attrs = self.attrs(item)
        if kind == "module":
            self.emit(path_t, 0, "mod", path + attrs)
        elif kind == "struct":
            self.emit(path_t, 0, "struct", path + self.params(inner["generics"]) + self.struct_body(inner["kind"], path_t) + self.where(inner["generics"]) + attrs)
            self.emit_impls(inner["impls"], path_t)
        elif kind == "union":
            stripped = " { /* private fields */ }" if inner["has_stripped_fields"] else ""
            self.emit(path_t, 0, "union", path + self.params(inner["generics"]) + stripped + self.where(inner["generics"]) + attrs)
            self.emit_fields(inner["fields"], path_t)
            self.emit_impls(inner["impls"], path_t)
        elif kind == "enum":
            stripped = " { /* hidden variants */ }" if inner["has_stripped_variants"] else ""
            self.emit(path_t, 0, "enum", path + self.params(inner["generics"]) + stripped + self.where(inner["generics"]) + attrs)
            for variant_id in inner["variants"]:
                variant = self.item(variant_id)
                if self.hidden(variant):
                    continue
                self.emit(path_t, 1, "variant", path + "::" + self.variant(variant) + self.attrs(variant), indent=True)
            self.emit_impls(inner["impls"], path_t)
        elif kind == "variant":
            # reached through a glob re-export of an enum's variants
            self.emit(path_t, 0, "variant", path + self.variant(item)[len(item["name"]):] + attrs)
        elif kind == "function":
            self.emit(path_t, 0, "fn", self.function(path, inner) + attrs)
        elif kind == "trait":
            self.emit_trait(item, inner, path_t, attrs)
        elif kind == "trait_alias":
            self.emit(path_t, 0, "trait-alias", path + self.params(inner["generics"]) + " = " + self.bounds(inner["params"]) + self.where(inner["generics"]) + attrs)
        elif kind == "type_alias":
            self.emit(path_t, 0, "type", path + self.params(inner["generics"]) + " = " + self.ty(inner["type"]) + self.where(inner["generics"]) + attrs)
        elif kind == "constant":
            self.emit(path_t, 0, "const", path + ": " + self.ty(inner["type"]) + attrs)
        elif kind == "static":
            mut = "mut " if inner["is_mutable"] else ""
            self.emit(path_t, 0, "static", mut + path + ": " + self.ty(inner["type"]) + attrs)
        elif kind == "macro":
            self.emit(path_t, 0, "macro", path + "!" + attrs)
        elif kind == "proc_macro":
            self.emit(path_t, 0, "proc-macro-" + inner["kind"], path + attrs)
        elif kind in ("extern_type",):
            self.emit(path_t, 0, "extern-type", path + attrs)
        elif kind == "extern_crate":
            self.emit(path_t, 0, "extern-crate", path + " = " + inner["name"] + attrs)
        else:
            raise FormatError(f"unexpected public item kind {kind!r} at {path}")

    def struct_body(self, kind, path_t):
        name, body = one_key(kind, "struct kind")
        if name == "unit":
            return ";"
        if name == "tuple":
            return "(" + ", ".join(self.tuple_field(f) for f in body) + ")"
        if name == "plain":
            self.emit_fields(body["fields"], path_t)
            return " { /* private fields */ }" if body["has_stripped_fields"] else ""
        raise FormatError(f"unknown struct kind {name!r}")

    def tuple_field(self, field_id):
        if field_id is None:
            return "_"
        field = self.item(field_id)
        if field is None or self.hidden(field):
            return "_"
        return ("pub " if field["visibility"] == "public" else "") + self.ty(field["inner"]["struct_field"])

    def emit_fields(self, field_ids, path_t):
        for field_id in field_ids:
            field = self.item(field_id)
            if field["visibility"] != "public" or self.hidden(field):
                continue
            self.emit(
                path_t,
                1,
                "field",
                "::".join(path_t) + "::" + field["name"] + ": " + self.ty(field["inner"]["struct_field"]) + self.attrs(field),
                indent=True,
            )

    def variant(self, variant):
        body = variant["inner"]["variant"]
        name, fields = one_key(body["kind"], "variant kind")
        text = variant["name"]
        if name == "plain":
            pass
        elif name == "tuple":
            text += "(" + ", ".join(self.tuple_field(f) for f in fields).replace("pub ", "") + ")"
        elif name == "struct":
            parts = []
            for field_id in fields["fields"]:
                field = self.item(field_id)
                if self.hidden(field):
                    continue
                parts.append(field["name"] + ": " + self.ty(field["inner"]["struct_field"]))
            if fields["has_stripped_fields"]:
                parts.append("..")
            text += " { " + ", ".join(parts) + " }" if parts else " {}"
        else:
            raise FormatError(f"unknown variant kind {name!r}")
        if body["discriminant"] is not None:
            text += " = " + body["discriminant"]["value"]
        return text

    def emit_trait(self, item, inner, path_t, attrs):
        path = "::".join(path_t)
        sealed = any(
            one_key(b, "generic bound")[0] == "trait_bound"
            and self.is_private_local(b["trait_bound"]["trait"]["id"])
            for b in inner["bounds"]
        )
        members = []
        for member_id in inner["items"]:
            member = self.item(member_id)
            if member is None or self.hidden(member):
                continue
            kind, body = one_key(member["inner"], "trait item kind")
            name = path + "::" + member["name"]
            if kind == "function":
                sealed = sealed or self.mentions_private(body["sig"])
                provided = " (provided)" if body["has_body"] else ""
                members.append(("trait-fn", self.function(name, body) + provided))
            elif kind == "assoc_type":
                text = name + self.params(body["generics"])
                if body["bounds"]:
                    text += ": " + self.bounds(body["bounds"])
                text += self.where(body["generics"])
                if body["type"] is not None:
                    text += " = " + self.ty(body["type"]) + " (provided)"
                members.append(("trait-type", text))
            elif kind == "assoc_const":
                provided = " (provided)" if body["value"] is not None else ""
                members.append(("trait-const", name + ": " + self.ty(body["type"]) + provided))
            else:
                raise FormatError(f"unexpected trait item kind {kind!r} in {path}")
        head = ""
        if inner["is_unsafe"]:
            head += "unsafe "
        if inner["is_auto"]:
            head += "auto "
        text = head + path + self.params(inner["generics"])
        if inner["bounds"]:
            text += ": " + self.bounds(inner["bounds"])
        text += self.where(inner["generics"])
        text += " [sealed]" if sealed else " [open]"
        if inner["is_dyn_compatible"]:
            text += " [dyn-compatible]"
        text += attrs
        self.emit(path_t, 0, "trait", text)
        for kind, member_text in members:
            self.emit(path_t, SECTION[kind], kind, member_text, indent=True)
        for impl_id in inner["implementations"]:
            self.emit_impl(str(impl_id), owner=None)

    def mentions_private(self, node):
        """Whether a JSON subtree names an item of this crate that is not public."""
        if isinstance(node, dict):
            if "id" in node and "path" in node and self.is_private_local(node["id"]):
                return True
            return any(self.mentions_private(v) for v in node.values())
        if isinstance(node, list):
            return any(self.mentions_private(v) for v in node)
        return False

    def emit_impls(self, impl_ids, owner):
        for impl_id in impl_ids:
            self.emit_impl(str(impl_id), owner)

    def impl_owner(self, impl):
        """The public item an impl is listed under: its self type, else its trait."""
        candidates = []
        for_kind, for_body = one_key(impl["for"], "type")
        if for_kind == "resolved_path":
            candidates.append(for_body["id"])
        if impl["trait"] is not None:
            candidates.append(impl["trait"]["id"])
        for candidate in candidates:
            if str(candidate) in self.canonical:
                return self.canonical[str(candidate)]
        # e.g. `impl From<cmek::Error> for std::io::Error`
        return self.first_public_mention([impl["trait"], impl["for"]])

    def first_public_mention(self, node):
        """The canonical path of the first public item of this crate a JSON subtree names."""
        if isinstance(node, dict):
            if "id" in node and "path" in node and str(node["id"]) in self.canonical:
                return self.canonical[str(node["id"])]
            values = node.values()
        elif isinstance(node, list):
            values = node
        else:
            return None
        for value in values:
            found = self.first_public_mention(value)
            if found is not None:
                return found
        return None

    def emit_impl(self, impl_id, owner):
        if impl_id in self.seen_impls:
            return
        item = self.item(impl_id)
        if item is None or self.hidden(item):
            return
        impl = item["inner"]["impl"]
        if impl["blanket_impl"] is not None:
            return
        trait = impl["trait"]
        if trait is not None:
            summary = self.paths.get(str(trait["id"]))
            if summary is not None and tuple(summary["path"]) in SKIPPED_TRAITS:
                return
            if self.is_private_local(trait["id"]):
                return
        if owner is None:
            owner = self.impl_owner(impl)
            if owner is None:
                return  # neither its type nor its trait is public
        self.seen_impls.add(impl_id)
        generics = impl["generics"]
        for_type = self.ty(impl["for"])
        if trait is None:
            self.emit_inherent(impl, owner, for_type)
            return
        text = "impl" + self.params(generics) + " "
        if impl["is_unsafe"]:
            text = "unsafe " + text
        text += ("!" if impl["is_negative"] else "") + self.path_ref(trait) + " for " + for_type
        text += self.where(generics)
        assoc = []
        for member_id in impl["items"]:
            member = self.item(member_id)
            kind, body = one_key(member["inner"], "impl item kind")
            if kind == "assoc_type" and body["type"] is not None:
                assoc.append(f"type {member['name']} = {self.ty(body['type'])};")
            elif kind == "assoc_const":
                assoc.append(f"const {member['name']}: {self.ty(body['type'])};")
        if assoc:
            text += " { " + " ".join(assoc) + " }"
        self.emit(owner, SECTION["impl"], "impl", text, indent=True)

    def emit_inherent(self, impl, owner, for_type):
        generics = impl["generics"]
        context = ""
        if generics["params"] or generics["where_predicates"]:
            context = f"  (in impl{self.params(generics)} {for_type}{self.where(generics)})"
        base = "::".join(owner)
        for member_id in impl["items"]:
            member = self.item(member_id)
            if member is None or member["visibility"] != "public" or self.hidden(member):
                continue
            kind, body = one_key(member["inner"], "impl item kind")
            attrs = self.attrs(member)
            name = base + "::" + member["name"]
            if kind == "function":
                self.emit(owner, SECTION["method"], "method", self.function(name, body) + attrs + context, indent=True)
            elif kind == "assoc_const":
                self.emit(owner, SECTION["assoc-const"], "assoc-const", name + ": " + self.ty(body["type"]) + attrs + context, indent=True)
            elif kind == "assoc_type":
                value = " = " + self.ty(body["type"]) if body["type"] is not None else ""
                self.emit(owner, SECTION["assoc-type"], "assoc-type", name + value + attrs + context, indent=True)
            else:
                raise FormatError(f"unexpected impl item kind {kind!r} on {base}")


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        krate = json.load(f)
    try:
        api = Api(krate)
        lines = api.run()
    except (FormatError, KeyError, TypeError, AttributeError) as e:
        print(f"public_api.py: cannot read {argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        print("public_api.py: the rustdoc JSON format may have changed", file=sys.stderr)
        return 1
    sys.stdout.write("".join(line + "\n" for line in lines))
    detail = ", ".join(f"{n} {k}" for k, n in sorted(api.kinds.items()))
    print(f"{len(lines)} public items ({detail}); rustdoc JSON format {api.format_version}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
