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
# Two fixes to the generated Kotlin callback glue, until uniffi ships them (drop each then; the
# counts below fail the build when uniffi's text changes):
# 1. catch kotlin.Throwable, not only kotlin.Exception: an Error a handler object throws
#    (AssertionError, StackOverflowError, TODO()'s NotImplementedError) escaped the JNA callback,
#    so a blocking handler "returned" an empty value (Store.inTransaction committed the work that
#    threw) and a suspending one never answered (the call hung). Upstream: mozilla/uniffi-rs#2903,
#    fixed by #2945 after 0.32.
# 2. the text of such an exception goes through hostTextLossy (HostText.kt): uniffi's strict
#    UTF-8 encoder throws on a lone surrogate in a message, from inside the catch (a blocking
#    handler's failure became "Error", a suspending one hung). A failure text is stored lossily.
kt="$tmp/kotlin/dev/oncely/oncely.kt"
patch() { # COUNT FROM TO
  n=$(grep -cF -- "$2" "$kt" || true)
  [ "$n" = "$1" ] || { echo "generate.sh: expected $1 x '$2' in the generated Kotlin, found $n" >&2; exit 1; }
  FROM="$2" TO="$3" perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$kt"
}
patch 4 'catch(e: kotlin.Exception) {' 'catch(e: kotlin.Throwable) {'
patch 2 'FfiConverterString.lower(err)' 'FfiConverterString.lower(hostTextLossy(err))'
patch 2 'FfiConverterString.lower(e.toString())' 'FfiConverterString.lower(hostTextLossy(e.toString()))'
cp "$kt" "$out/kotlin/src/main/kotlin/dev/oncely/oncely.kt"
cp "$tmp/swift/Oncely.swift" "$out/swift/Sources/Oncely/Oncely.swift"
cp "$tmp/swift/OncelyFFI.h" "$out/swift/include/OncelyFFI.h"
# An XCFramework's headers folder names its module map module.modulemap.
cp "$tmp/swift/OncelyFFI.modulemap" "$out/swift/include/module.modulemap"
