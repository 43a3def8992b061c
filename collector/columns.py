"""Where each tracker parameter goes in the enriched event and what its text must look like: one
table, read once per parameter while the protocol is checked (the enricher then only adds what
is derived: timestamps, identities, URLs, JSON)."""

from __future__ import annotations

from typing import Final

from lvp.enriched import INDEX

# how a value is checked
CHECK_NONE, CHECK_MS, CHECK_INT, CHECK_DOUBLE, CHECK_DIM = 0, 1, 2, 3, 4
# where it goes
PUT_NONE, PUT_COPY, PUT_BOOL, PUT_DIMS = 0, 1, 2, 3

_COPIED = (
    ("aid", "app_id"), ("p", "platform"), ("tna", "name_tracker"), ("tv", "v_tracker"),
    ("page", "page_title"), ("lang", "br_lang"), ("cd", "br_colordepth"), ("tz", "os_timezone"),
    ("cs", "doc_charset"), ("sid", "domain_sessionid"), ("se_ca", "se_category"),
    ("se_ac", "se_action"), ("se_la", "se_label"), ("se_pr", "se_property"),
    ("tr_id", "tr_orderid"), ("tr_af", "tr_affiliation"), ("tr_ci", "tr_city"), ("tr_st", "tr_state"),
    ("tr_co", "tr_country"), ("tr_cu", "tr_currency"), ("ti_id", "ti_orderid"), ("ti_sk", "ti_sku"),
    ("ti_nm", "ti_name"), ("ti_na", "ti_name"), ("ti_ca", "ti_category"), ("ti_cu", "ti_currency"),
)  # fmt: skip
_INTEGERS = (
    ("vid", "domain_sessionidx"), ("tid", "txn_id"), ("pp_mix", "pp_xoffset_min"),
    ("pp_max", "pp_xoffset_max"), ("pp_miy", "pp_yoffset_min"), ("pp_may", "pp_yoffset_max"),
    ("ti_qu", "ti_quantity"),
)  # fmt: skip
_DOUBLES = (
    ("se_va", "se_value"), ("tr_tt", "tr_total"), ("tr_tx", "tr_tax"), ("tr_sh", "tr_shipping"),
    ("ti_pr", "ti_price"),
)  # fmt: skip
_BOOLEANS = (
    ("cookie", "br_cookies"), ("f_pdf", "br_features_pdf"), ("f_fla", "br_features_flash"),
    ("f_java", "br_features_java"), ("f_dir", "br_features_director"), ("f_qt", "br_features_quicktime"),
    ("f_realp", "br_features_realplayer"), ("f_wma", "br_features_windowsmedia"),
    ("f_gears", "br_features_gears"), ("f_ag", "br_features_silverlight"),
)  # fmt: skip
_DIMENSIONS = (
    ("res", "dvce_screenwidth", "dvce_screenheight"),
    ("vp", "br_viewwidth", "br_viewheight"),
    ("ds", "doc_width", "doc_height"),
)

#: tracker parameter -> (check, put, column index, second column index)
PARAMS: Final[dict[str, tuple[int, int, int, int]]] = {
    **{p: (CHECK_NONE, PUT_COPY, INDEX[c], -1) for p, c in _COPIED},
    **{p: (CHECK_INT, PUT_COPY, INDEX[c], -1) for p, c in _INTEGERS},
    **{p: (CHECK_DOUBLE, PUT_COPY, INDEX[c], -1) for p, c in _DOUBLES},
    **{p: (CHECK_NONE, PUT_BOOL, INDEX[c], -1) for p, c in _BOOLEANS},
    **{p: (CHECK_DIM, PUT_DIMS, INDEX[w], INDEX[h]) for p, w, h in _DIMENSIONS},
    **{p: (CHECK_MS, PUT_NONE, -1, -1) for p in ("dtm", "stm", "ttm")},
}


def put(cols: list[str], how: int, i: int, j: int, value: str) -> None:
    """Write one checked, non-empty parameter value into the enriched columns."""
    if how == PUT_COPY:
        cols[i] = value
    elif how == PUT_BOOL:
        if value == "1" or value == "0":
            cols[i] = value
    elif how == PUT_DIMS:
        w, _, h = value.partition("x")
        cols[i] = w
        cols[j] = h
