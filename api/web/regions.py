"""Names of the regions the demo uses (GB/T 2260), for people who do not read codes."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["region_namer"]

# code -> (Chinese, English). Unknown codes show as they are.
NAMES: dict[str, tuple[str, str]] = {
    "61": ("陕西省", "Shaanxi"),
    "6101": ("西安市", "Xi'an"),
    "6104": ("咸阳市", "Xianyang"),
    "6105": ("渭南市", "Weinan"),
    "6106": ("延安市", "Yan'an"),
    "6107": ("汉中市", "Hanzhong"),
    "610104": ("莲湖区", "Lianhu district"),
    "610116": ("长安区", "Chang'an district"),
    "610425": ("礼泉县", "Liquan county"),
    "610523": ("大荔县", "Dali county"),
    "610526": ("蒲城县", "Pucheng county"),
    "610528": ("富平县", "Fuping county"),
    "610630": ("宜川县", "Yichuan county"),
    "610723": ("洋县", "Yang county"),
}


def region_namer(lang: str) -> Callable[[str | None], str]:
    """'610523 大荔县' (or 'Dali county'): the code with its name when known."""

    def name(code: str | None) -> str:
        if not code:
            return "—"
        known = NAMES.get(code)
        if known is None:
            return code
        return f"{code} {known[0] if lang == 'zh' else known[1]}"

    return name
