"""More one-to-one look-alikes for the letters secrets and identifiers are written in.

`normalize._HOMOGLYPHS` folds the Cyrillic and Greek letters that render as Latin ones. Token
alphabets (AWS `AKIA…`, GitHub `ghp_…`, Slack `xox…`) are upper- or lower-case ASCII, and an
attacker picks whichever script has a glyph for each letter; these come from Unicode's
confusables.txt (the prototype is the Latin letter), for the scripts that cover the Latin
alphabet best: Cherokee and Lisu (capitals), Latin small capitals (read as capitals), and the
Greek and Armenian letters left out of the first table. One-to-one, so the offset map holds.
"""

from __future__ import annotations

CONFUSABLES = {
    # Cherokee (U+13A0..U+13F4): capitals
    "Ꭺ": "A", "Ᏼ": "B", "Ꮯ": "C", "Ꭰ": "D", "Ꭼ": "E", "Ꮐ": "G", "Ꮋ": "H", "Ꭻ": "J", "Ꮶ": "K",
    "Ꮮ": "L", "Ꮇ": "M", "Ꮲ": "P", "Ꮪ": "S", "Ꭲ": "T", "Ꮩ": "V", "Ꮃ": "W", "Ꮓ": "Z", "Ꮢ": "R",
    "Ꭵ": "i", "Ꮍ": "y",
    # Lisu (U+A4D0..U+A4FF)
    "ꓮ": "A", "ꓐ": "B", "ꓚ": "C", "ꓓ": "D", "ꓰ": "E", "ꓝ": "F", "ꓖ": "G", "ꓧ": "H", "ꓲ": "I",
    "ꓙ": "J", "ꓗ": "K", "ꓡ": "L", "ꓟ": "M", "ꓠ": "N", "ꓳ": "O", "ꓑ": "P", "ꓣ": "R", "ꓢ": "S",
    "ꓔ": "T", "ꓴ": "U", "ꓦ": "V", "ꓪ": "W", "ꓫ": "X", "ꓬ": "Y", "ꓜ": "Z",
    # Latin small capitals (IPA / phonetic extensions), read as the capital letter
    "ᴀ": "A", "ʙ": "B", "ᴄ": "C", "ᴅ": "D", "ᴇ": "E", "ꜰ": "F", "ɢ": "G", "ʜ": "H", "ɪ": "I",
    "ᴊ": "J", "ᴋ": "K", "ʟ": "L", "ᴍ": "M", "ɴ": "N", "ᴏ": "O", "ᴘ": "P", "ʀ": "R", "ꜱ": "S",
    "ᴛ": "T", "ᴜ": "U", "ᴠ": "V", "ᴡ": "W", "ʏ": "Y", "ᴢ": "Z",
    # Greek small letters not in the first table
    "α": "a", "ρ": "p", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j", "ω": "w", "η": "n", "τ": "t",
    "Ϲ": "C", "Ϻ": "M", "Ϝ": "F",
    # Armenian
    "Օ": "O", "Ս": "U", "Տ": "S", "Վ": "V", "Ց": "G",
    "ց": "g", "հ": "h", "ո": "n", "զ": "q", "ք": "p", "ա": "w", "ɑ": "a", "ⅼ": "l",
}  # fmt: skip
