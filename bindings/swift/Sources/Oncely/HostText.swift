// Hand-written (not generated): how a Swift String crosses into oncely (uniffi.toml's custom type
// HostText, bindings/uniffi/src/text.rs): as its UTF-16 code units, little-endian, which the core
// decodes by its one rule (oncely::text::from_utf16). A Swift String is always valid Unicode — it
// cannot hold a lone surrogate (String(decoding:as:) repairs one to U+FFFD when it is built) — so
// Swift never meets the lone-surrogate error Kotlin, Python and Node can. Not compiled on the
// machines that test oncely (no Swift compiler there); keep it to plain standard-library code.
import Foundation

/// The UTF-16 code units of `s`, little-endian, two bytes each.
func hostTextToUtf16(_ s: String) -> Data {
    var out = Data()
    out.reserveCapacity(s.utf16.count * 2)
    for unit in s.utf16 {
        out.append(UInt8(truncatingIfNeeded: unit))
        out.append(UInt8(truncatingIfNeeded: unit >> 8))
    }
    return out
}

/// The string whose UTF-16 code units, little-endian, are `data` (text oncely hands back).
func hostTextFromUtf16(_ data: Data) -> String {
    let bytes = [UInt8](data)
    var units = [UInt16]()
    units.reserveCapacity(bytes.count / 2)
    var i = 0
    while i + 1 < bytes.count {
        units.append(UInt16(bytes[i]) | (UInt16(bytes[i + 1]) << 8))
        i += 2
    }
    return String(decoding: units, as: UTF16.self)
}
