#!/bin/sh
# Generates the Kotlin and Swift sources of oncely-ffi in library mode, laid out as committed:
#   OUT/kotlin/src/main/kotlin/dev/oncely/oncely.kt
#   OUT/swift/Sources/Oncely/Oncely.swift
#   OUT/swift/include/OncelyFFI.h, OUT/swift/include/module.modulemap
# Usage: bindings/generate.sh LIBRARY BINDGEN OUT   (OUT=bindings rewrites the committed files)
set -eu
lib=$1
bindgen=$2
out=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bindgen" generate --library "$lib" --language kotlin --out-dir "$tmp/kotlin" --no-format >/dev/null
"$bindgen" generate --library "$lib" --language swift --out-dir "$tmp/swift" --no-format >/dev/null
mkdir -p "$out/kotlin/src/main/kotlin/dev/oncely" "$out/swift/Sources/Oncely" "$out/swift/include"
cp "$tmp/kotlin/dev/oncely/oncely.kt" "$out/kotlin/src/main/kotlin/dev/oncely/oncely.kt"
cp "$tmp/swift/Oncely.swift" "$out/swift/Sources/Oncely/Oncely.swift"
cp "$tmp/swift/OncelyFFI.h" "$out/swift/include/OncelyFFI.h"
# An XCFramework's headers folder names its module map module.modulemap.
cp "$tmp/swift/OncelyFFI.modulemap" "$out/swift/include/module.modulemap"
