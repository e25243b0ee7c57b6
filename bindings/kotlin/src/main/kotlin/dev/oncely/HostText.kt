// Hand-written (not generated): how a Kotlin String crosses into oncely (uniffi.toml's custom type
// HostText, bindings/uniffi/src/text.rs). Every UTF-16 code unit goes as it is — a lone surrogate
// included — so the core decodes the text by its one rule (oncely::text::from_utf16) and refuses a
// lone surrogate with InvalidArgument and its own message, as for Python and Node. uniffi's String
// conversion encodes to UTF-8 on this side instead, where a lone surrogate is an untyped
// MalformedInputException (or, replaced, two distinct ids become one).
package dev.oncely

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The UTF-16 code units of [s], little-endian, two bytes each: never fails. */
internal fun hostTextToUtf16(s: String): ByteArray {
    val out = ByteBuffer.allocate(Math.multiplyExact(s.length, 2)).order(ByteOrder.LITTLE_ENDIAN)
    out.asCharBuffer().put(s)
    return out.array()
}

/** The string whose UTF-16 code units, little-endian, are [b] (text oncely hands back). */
internal fun hostTextFromUtf16(b: ByteArray): String =
    ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asCharBuffer().toString()

/**
 * [s] with each lone surrogate replaced by U+FFFD: the text of an exception that escapes a handler
 * object, which uniffi's own String conversion could not encode (bindings/generate.sh applies it in
 * the generated callback glue). A failure text is stored lossily, never refused.
 */
internal fun hostTextLossy(s: String): String {
    var i = 0
    while (i < s.length && !s[i].isSurrogate()) i++
    if (i == s.length) return s
    val out = StringBuilder(s.length).append(s, 0, i)
    while (i < s.length) {
        val c = s[i]
        if (c.isHighSurrogate() && i + 1 < s.length && s[i + 1].isLowSurrogate()) {
            out.append(c).append(s[i + 1])
            i += 2
        } else {
            out.append(if (c.isSurrogate()) '\uFFFD' else c)
            i++
        }
    }
    return out.toString()
}
