"""The country table behind the mapping filters: ISO code or English name → primary IANA zone and region."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["COUNTRIES", "Country", "Region", "find_country"]


class Region(StrEnum):
    """Sales regions a location is filed under."""

    NA = "NA"
    EU = "EU"
    APAC = "APAC"
    LATAM = "LATAM"
    MEA = "MEA"


@dataclass(frozen=True)
class Country:
    """One country: ISO 3166-1 alpha-2 code, English name, other names in use, zone and region."""

    code: str
    name: str
    timezone: str
    region: Region
    aliases: tuple[str, ...] = ()


_NA, _EU, _APAC, _LATAM, _MEA = Region.NA, Region.EU, Region.APAC, Region.LATAM, Region.MEA

# One zone per country: the zone of its capital or, where several zones exist, of its largest population
# centre (US → New York, CA → Toronto, BR → São Paulo, AU → Sydney, RU → Moscow, MX → Mexico City).
# Turkey and Cyprus are filed under EU and Pakistan under APAC; the table is the documented choice.
COUNTRIES: tuple[Country, ...] = (
    Country("US", "United States", "America/New_York", _NA,
            ("United States of America", "USA", "U.S.", "U.S.A.", "America")),
    Country("CA", "Canada", "America/Toronto", _NA),
    Country("GB", "United Kingdom", "Europe/London", _EU,
            ("UK", "U.K.", "Great Britain", "England", "Scotland", "Wales", "Northern Ireland")),
    Country("IE", "Ireland", "Europe/Dublin", _EU),
    Country("FR", "France", "Europe/Paris", _EU),
    Country("DE", "Germany", "Europe/Berlin", _EU, ("Deutschland",)),
    Country("NL", "Netherlands", "Europe/Amsterdam", _EU, ("The Netherlands", "Holland")),
    Country("BE", "Belgium", "Europe/Brussels", _EU),
    Country("LU", "Luxembourg", "Europe/Luxembourg", _EU),
    Country("CH", "Switzerland", "Europe/Zurich", _EU),
    Country("AT", "Austria", "Europe/Vienna", _EU),
    Country("IT", "Italy", "Europe/Rome", _EU),
    Country("ES", "Spain", "Europe/Madrid", _EU),
    Country("PT", "Portugal", "Europe/Lisbon", _EU),
    Country("DK", "Denmark", "Europe/Copenhagen", _EU),
    Country("SE", "Sweden", "Europe/Stockholm", _EU),
    Country("NO", "Norway", "Europe/Oslo", _EU),
    Country("FI", "Finland", "Europe/Helsinki", _EU),
    Country("IS", "Iceland", "Atlantic/Reykjavik", _EU),
    Country("PL", "Poland", "Europe/Warsaw", _EU),
    Country("CZ", "Czechia", "Europe/Prague", _EU, ("Czech Republic",)),
    Country("SK", "Slovakia", "Europe/Bratislava", _EU),
    Country("HU", "Hungary", "Europe/Budapest", _EU),
    Country("RO", "Romania", "Europe/Bucharest", _EU),
    Country("BG", "Bulgaria", "Europe/Sofia", _EU),
    Country("GR", "Greece", "Europe/Athens", _EU),
    Country("HR", "Croatia", "Europe/Zagreb", _EU),
    Country("SI", "Slovenia", "Europe/Ljubljana", _EU),
    Country("RS", "Serbia", "Europe/Belgrade", _EU),
    Country("EE", "Estonia", "Europe/Tallinn", _EU),
    Country("LV", "Latvia", "Europe/Riga", _EU),
    Country("LT", "Lithuania", "Europe/Vilnius", _EU),
    Country("UA", "Ukraine", "Europe/Kyiv", _EU),
    Country("BY", "Belarus", "Europe/Minsk", _EU),
    Country("MD", "Moldova", "Europe/Chisinau", _EU, ("Moldova, Republic of",)),
    Country("RU", "Russia", "Europe/Moscow", _EU, ("Russian Federation",)),
    Country("TR", "Turkey", "Europe/Istanbul", _EU, ("Türkiye", "Turkiye")),
    Country("CY", "Cyprus", "Asia/Nicosia", _EU),
    Country("MT", "Malta", "Europe/Malta", _EU),
    Country("IL", "Israel", "Asia/Jerusalem", _MEA),
    Country("AE", "United Arab Emirates", "Asia/Dubai", _MEA, ("UAE",)),
    Country("SA", "Saudi Arabia", "Asia/Riyadh", _MEA),
    Country("QA", "Qatar", "Asia/Qatar", _MEA),
    Country("KW", "Kuwait", "Asia/Kuwait", _MEA),
    Country("BH", "Bahrain", "Asia/Bahrain", _MEA),
    Country("OM", "Oman", "Asia/Muscat", _MEA),
    Country("JO", "Jordan", "Asia/Amman", _MEA),
    Country("LB", "Lebanon", "Asia/Beirut", _MEA),
    Country("IR", "Iran", "Asia/Tehran", _MEA, ("Iran, Islamic Republic of",)),
    Country("IQ", "Iraq", "Asia/Baghdad", _MEA),
    Country("EG", "Egypt", "Africa/Cairo", _MEA),
    Country("MA", "Morocco", "Africa/Casablanca", _MEA),
    Country("DZ", "Algeria", "Africa/Algiers", _MEA),
    Country("TN", "Tunisia", "Africa/Tunis", _MEA),
    Country("NG", "Nigeria", "Africa/Lagos", _MEA),
    Country("GH", "Ghana", "Africa/Accra", _MEA),
    Country("KE", "Kenya", "Africa/Nairobi", _MEA),
    Country("ET", "Ethiopia", "Africa/Addis_Ababa", _MEA),
    Country("TZ", "Tanzania", "Africa/Dar_es_Salaam", _MEA, ("Tanzania, United Republic of",)),
    Country("UG", "Uganda", "Africa/Kampala", _MEA),
    Country("ZA", "South Africa", "Africa/Johannesburg", _MEA),
    Country("IN", "India", "Asia/Kolkata", _APAC),
    Country("PK", "Pakistan", "Asia/Karachi", _APAC),
    Country("BD", "Bangladesh", "Asia/Dhaka", _APAC),
    Country("LK", "Sri Lanka", "Asia/Colombo", _APAC),
    Country("NP", "Nepal", "Asia/Kathmandu", _APAC),
    Country("CN", "China", "Asia/Shanghai", _APAC),
    Country("HK", "Hong Kong", "Asia/Hong_Kong", _APAC),
    Country("TW", "Taiwan", "Asia/Taipei", _APAC),
    Country("JP", "Japan", "Asia/Tokyo", _APAC),
    Country("KR", "South Korea", "Asia/Seoul", _APAC, ("Korea, Republic of", "Republic of Korea", "Korea")),
    Country("SG", "Singapore", "Asia/Singapore", _APAC),
    Country("MY", "Malaysia", "Asia/Kuala_Lumpur", _APAC),
    Country("TH", "Thailand", "Asia/Bangkok", _APAC),
    Country("VN", "Vietnam", "Asia/Ho_Chi_Minh", _APAC, ("Viet Nam",)),
    Country("PH", "Philippines", "Asia/Manila", _APAC),
    Country("ID", "Indonesia", "Asia/Jakarta", _APAC),
    Country("KZ", "Kazakhstan", "Asia/Almaty", _APAC),
    Country("AU", "Australia", "Australia/Sydney", _APAC),
    Country("NZ", "New Zealand", "Pacific/Auckland", _APAC),
    Country("MX", "Mexico", "America/Mexico_City", _LATAM),
    Country("GT", "Guatemala", "America/Guatemala", _LATAM),
    Country("SV", "El Salvador", "America/El_Salvador", _LATAM),
    Country("HN", "Honduras", "America/Tegucigalpa", _LATAM),
    Country("NI", "Nicaragua", "America/Managua", _LATAM),
    Country("CR", "Costa Rica", "America/Costa_Rica", _LATAM),
    Country("PA", "Panama", "America/Panama", _LATAM),
    Country("CU", "Cuba", "America/Havana", _LATAM),
    Country("DO", "Dominican Republic", "America/Santo_Domingo", _LATAM),
    Country("PR", "Puerto Rico", "America/Puerto_Rico", _LATAM),
    Country("JM", "Jamaica", "America/Jamaica", _LATAM),
    Country("TT", "Trinidad and Tobago", "America/Port_of_Spain", _LATAM),
    Country("CO", "Colombia", "America/Bogota", _LATAM),
    Country("VE", "Venezuela", "America/Caracas", _LATAM),
    Country("EC", "Ecuador", "America/Guayaquil", _LATAM),
    Country("PE", "Peru", "America/Lima", _LATAM),
    Country("BO", "Bolivia", "America/La_Paz", _LATAM),
    Country("CL", "Chile", "America/Santiago", _LATAM),
    Country("AR", "Argentina", "America/Argentina/Buenos_Aires", _LATAM),
    Country("UY", "Uruguay", "America/Montevideo", _LATAM),
    Country("PY", "Paraguay", "America/Asuncion", _LATAM),
    Country("BR", "Brazil", "America/Sao_Paulo", _LATAM, ("Brasil",)),
)


def _key(text: str) -> str:
    # Case, spacing and dots ("U.S.A.", "korea,  republic of") must not matter.
    return re.sub(r"\s+", " ", text.replace(".", "")).strip().casefold()


def _index() -> dict[str, Country]:
    found: dict[str, Country] = {}
    for country in COUNTRIES:
        for name in (country.code, country.name, *country.aliases):
            found[_key(name)] = country
    return found


_BY_KEY = _index()


def find_country(text: str) -> Country | None:
    """The country named by an ISO alpha-2 code or an English name (as Gumroad sends it), or None."""
    return _BY_KEY.get(_key(text))
