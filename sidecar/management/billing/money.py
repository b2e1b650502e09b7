"""Money: Decimal amounts, currencies' minor units and the one rounding rule.

Amounts are ``decimal.Decimal`` from the plans files to the invoice: prices are read from the
YAML source text (``0.0001`` is never a float on the way), quantities are whole numbers or
exact decimals. The rule, applied in one place (``round_line``):

    every invoice line is rounded on its own to the currency's minor unit (cents for EUR and
    USD, whole yen for JPY, thousandths for KWD), half to even ("banker's rounding":
    0.125 -> 0.12, 0.135 -> 0.14); the subtotal is the sum of the rounded lines, so the lines
    always add up to it.

Minor units are ISO 4217's: two decimals unless the code is listed below.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

CURRENCY = re.compile(r"[A-Z]{3}\Z")
# ISO 4217 codes whose minor unit is not the hundredth.
_DECIMALS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# Enough digits for any amount an invoice can hold (quantities up to 10^13, prices with up to
# 12 decimals): products are exact, never rounded by the context.
EXACT = Context(prec=60)
MAX_DECIMALS = 12
_AMOUNT = re.compile(rf"\d{{1,15}}(\.\d{{1,{MAX_DECIMALS}}})?")


def minor_digits(currency: str) -> int:
    """How many decimals the currency's minor unit has (2 unless ISO 4217 says otherwise)."""
    return _DECIMALS.get(currency, 2)


def round_line(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded to the currency's minor unit, half to even (the invoice rule)."""
    quantum = Decimal(1).scaleb(-minor_digits(currency))
    return amount.quantize(quantum, rounding=ROUND_HALF_EVEN, context=EXACT)


def parse_amount(text: str) -> Decimal | None:
    """A non-negative decimal written in plain notation (``12``, ``0.0001``); None when
    ``text`` is anything else (a sign, an exponent, NaN, more than 12 decimals)."""
    if not _AMOUNT.fullmatch(text.strip()):
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        return None


def plain(amount: Decimal) -> str:
    """``amount`` in plain notation, never with an exponent (``1E+3`` -> ``1000``)."""
    text = format(amount, "f")
    return "0" if text in ("-0", "") else text
