"""The ten scenario domains: units, sampling intervals, magnitudes and all domain text.

A `Domain` is pure data. The simulator works on a dimensionless level `Y ~ 1` per node
(see `envs.sde`); a domain maps it to physical units with a per-node level drawn from
`level_range` (traffic speed 40-100 km/h, river discharge 80-1500 m3/s, ...), and says
whether its events raise or lower the observed quantity (congestion lowers speed).

Texts are written so that every statement a question relies on is checkable from the
prompt: role texts describe graph position or observed behaviour, scenario texts name the
nodes where a disturbance starts. Role names are deliberately distinct (no near-synonyms).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("origin", "feeder", "junction", "relay", "terminal")
"""Node roles used by the `entity` task (see `envs.tasks.entity` for their definitions)."""

MECHANISMS = ("single", "multi", "network_wide", "calm")
"""Scenario mechanisms used by the `etiological` task."""


@dataclass(frozen=True)
class Domain:
    name: str
    quantity: str
    unit: str
    sampling_minutes: int
    level_range: tuple[float, float]
    event_sign: int
    """+1 if a disturbance raises the observed quantity, -1 if it lowers it."""
    place_names: tuple[str, ...]
    roles: dict[str, tuple[str, str]]
    """role -> (name, description) for the entity task."""
    mechanisms: dict[str, str]
    """mechanism -> template; {src} is one node, {srcs} a list of nodes."""
    event_noun: str
    """Short noun for the disturbance: 'slowdown', 'flood wave', ..."""

    @property
    def step_text(self) -> str:
        """Human text for one time step, e.g. '5 minutes', '1 hour', '1 day'."""
        m = self.sampling_minutes
        if m % 1440 == 0:
            d = m // 1440
            return "1 day" if d == 1 else f"{d} days"
        if m % 60 == 0:
            h = m // 60
            return "1 hour" if h == 1 else f"{h} hours"
        return f"{m} minutes"


def _d(**kw: object) -> Domain:
    return Domain(**kw)  # type: ignore[arg-type]


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in [
        _d(
            name="transportation",
            quantity="traffic speed",
            unit="km/h",
            sampling_minutes=5,
            level_range=(45.0, 100.0),
            event_sign=-1,
            place_names=("Elm Street", "Harbor Bridge", "Ring Road", "Airport Link",
                         "Market Square", "North Tunnel", "Riverside Drive", "Stadium Gate",
                         "Central Avenue", "East Interchange", "Old Town Loop", "Tech Park Exit"),
            roles={
                "origin": ("Incident Sensor", "segment where the slowdown first appears"),
                "feeder": ("Quiet Entry Sensor", "entry segment with no incoming links that stays free-flowing"),
                "junction": ("Merge Sensor", "segment where two or more incoming roads merge"),
                "relay": ("Corridor Sensor", "segment passing traffic from a single upstream road onward"),
                "terminal": ("Exit Sensor", "last segment of the network with no outgoing link"),
            },
            mechanisms={
                "single": "A crash near {src} slows traffic there first; the queue then spreads to downstream segments.",
                "multi": "Rush-hour congestion starts at the same time at {srcs} and spreads to downstream segments.",
                "network_wide": "A sudden hailstorm slows every segment of the network at the same moment.",
                "calm": "Free-flowing traffic with only small fluctuations and no incident.",
            },
            event_noun="slowdown",
        ),
        _d(
            name="energy",
            quantity="power load",
            unit="MW",
            sampling_minutes=15,
            level_range=(60.0, 400.0),
            event_sign=1,
            place_names=("Northgate", "Millbrook", "Harbor", "Steelworks", "Westfield",
                         "Cedar Hill", "Docklands", "Sunvale", "Ironbridge", "Lakeside",
                         "Quarry Road", "Eastmoor"),
            roles={
                "origin": ("Demand Surge Feeder", "feeder where the load surge begins"),
                "feeder": ("Idle Supply Feeder", "feeder with no upstream line whose load stays flat"),
                "junction": ("Collector Substation", "substation fed by two or more upstream lines"),
                "relay": ("Transfer Substation", "substation passing load from one upstream line onward"),
                "terminal": ("End-of-Line Substation", "substation at the end of the grid with no outgoing line"),
            },
            mechanisms={
                "single": "An industrial start-up at {src} raises its load first; the extra demand then flows to downstream substations.",
                "multi": "Evening demand peaks begin together at {srcs} and load the downstream substations.",
                "network_wide": "A heatwave switches on air conditioning across the whole grid at once.",
                "calm": "A steady load day with small fluctuations and no demand event.",
            },
            event_noun="load surge",
        ),
        _d(
            name="pollution",
            quantity="PM2.5 concentration",
            unit="ug/m3",
            sampling_minutes=60,
            level_range=(12.0, 60.0),
            event_sign=1,
            place_names=("Industrial Park", "Port Terminal", "City Center", "Green Valley",
                         "University", "Rail Yard", "Old Mill", "Hillside", "Bay Front",
                         "Suburb North", "Suburb South", "Airport"),
            roles={
                "origin": ("Emission Monitor", "site where the pollution episode starts"),
                "feeder": ("Background Monitor", "upwind site with no incoming transport that stays clean"),
                "junction": ("Convergence Monitor", "site receiving air from two or more upwind sites"),
                "relay": ("Transit Monitor", "site passing air from a single upwind site further downwind"),
                "terminal": ("Downwind Edge Monitor", "last downwind site with no outgoing transport"),
            },
            mechanisms={
                "single": "A factory release at {src} raises PM2.5 there first; the plume then drifts to downwind sites.",
                "multi": "Traffic and industrial emissions rise together at {srcs} and disperse downwind.",
                "network_wide": "A regional dust intrusion raises PM2.5 at every site at the same time.",
                "calm": "Clean, well-mixed air with small fluctuations and no emission episode.",
            },
            event_noun="pollution plume",
        ),
        _d(
            name="ecology",
            quantity="population density",
            unit="individuals/km2",
            sampling_minutes=1440,
            level_range=(40.0, 500.0),
            event_sign=1,
            place_names=("Oak Meadow", "Fern Gully", "Reed Marsh", "Pine Ridge", "Willow Creek",
                         "Heather Moor", "Birch Hollow", "Sedge Lake", "Alder Flats",
                         "Thistle Down", "Aspen Glade", "Clover Field"),
            roles={
                "origin": ("Outbreak Patch", "habitat patch where the population boom begins"),
                "feeder": ("Stable Patch", "patch with no incoming dispersal whose population stays steady"),
                "junction": ("Gathering Patch", "patch receiving dispersers from two or more patches"),
                "relay": ("Corridor Patch", "patch passing dispersers from a single patch onward"),
                "terminal": ("Dead-End Patch", "patch with no outgoing dispersal route"),
            },
            mechanisms={
                "single": "A food pulse at {src} triggers a population boom there first; dispersers then spread along the corridors.",
                "multi": "Breeding booms start together at {srcs} and spread to connected patches.",
                "network_wide": "A mild season lifts the population of every patch at the same time.",
                "calm": "Populations near carrying capacity with small fluctuations and no boom.",
            },
            event_noun="population boom",
        ),
        _d(
            name="public_health",
            quantity="influenza-like illness incidence",
            unit="cases/100k",
            sampling_minutes=1440,
            level_range=(5.0, 40.0),
            event_sign=1,
            place_names=("Ashford", "Brookton", "Carlow", "Dunmore", "Elston", "Fairhaven",
                         "Glenrock", "Hollis", "Ivybridge", "Jarrow", "Kingsley", "Larkfield"),
            roles={
                "origin": ("Index City", "city where the outbreak starts"),
                "feeder": ("Unaffected Satellite Town", "town with no incoming travel link that stays at baseline"),
                "junction": ("Travel Hub City", "city receiving travellers from two or more cities"),
                "relay": ("Transit Town", "town passing infection from a single city onward"),
                "terminal": ("Remote Town", "town with no outgoing travel link"),
            },
            mechanisms={
                "single": "An outbreak seeded at {src} raises incidence there first and spreads along travel links.",
                "multi": "School reopening raises incidence at the same time at {srcs}, then travel spreads it.",
                "network_wide": "A new variant raises incidence in every city at the same time.",
                "calm": "Endemic levels with small fluctuations and no outbreak.",
            },
            event_noun="outbreak",
        ),
        _d(
            name="hydrology",
            quantity="river discharge",
            unit="m3/s",
            sampling_minutes=60,
            level_range=(80.0, 1500.0),
            event_sign=1,
            place_names=("Upper Fork", "Stone Weir", "Mill Race", "Black Pool", "Cedar Ford",
                         "Salmon Leap", "Low Bridge", "Kettle Bend", "Heron Reach", "Gravel Bar",
                         "Fox Hollow", "Estuary Head"),
            roles={
                "origin": ("Storm Catchment Gauge", "gauge where the storm runoff enters first"),
                "feeder": ("Dry Tributary Gauge", "headwater gauge with no upstream inflow that stays at base flow"),
                "junction": ("Confluence Gauge", "gauge where two or more upstream channels join"),
                "relay": ("Mid-Reach Gauge", "gauge on a channel fed by a single upstream gauge"),
                "terminal": ("Outlet Gauge", "most downstream gauge where the network drains"),
            },
            mechanisms={
                "single": "Heavy rain over the catchment at {src} raises discharge there first; the flood wave then travels downstream.",
                "multi": "A storm front drops rain together on {srcs}; the flood waves travel downstream.",
                "network_wide": "Rapid snowmelt raises discharge at every gauge at the same time.",
                "calm": "Base flow with small fluctuations and no flood wave.",
            },
            event_noun="flood wave",
        ),
        _d(
            name="oceanography",
            quantity="significant wave height",
            unit="m",
            sampling_minutes=60,
            level_range=(0.6, 3.0),
            event_sign=1,
            place_names=("Outer Shoal", "Cape Buoy", "Gull Rock", "Deep Channel", "Kelp Bank",
                         "North Mole", "Sand Spit", "Lighthouse", "Reef Gap", "Bay Mouth",
                         "Harbor Wall", "Seal Point"),
            roles={
                "origin": ("Swell Entry Buoy", "buoy where the storm swell arrives first"),
                "feeder": ("Sheltered Buoy", "offshore buoy with no incoming swell path that stays calm"),
                "junction": ("Convergence Buoy", "buoy where swell from two or more buoys converges"),
                "relay": ("Midfield Buoy", "buoy passing swell from a single buoy shoreward"),
                "terminal": ("Nearshore Buoy", "innermost buoy with no further swell path"),
            },
            mechanisms={
                "single": "A distant storm sends swell that reaches {src} first and then propagates shoreward.",
                "multi": "Storm swell arrives at the same time at {srcs} and propagates shoreward.",
                "network_wide": "A local gale raises waves at every buoy at the same time.",
                "calm": "Calm seas with small fluctuations and no storm swell.",
            },
            event_noun="storm swell",
        ),
        _d(
            name="agriculture",
            quantity="soil moisture",
            unit="%",
            sampling_minutes=60,
            level_range=(15.0, 40.0),
            event_sign=1,
            place_names=("North Field", "Orchard", "Terrace 1", "Terrace 2", "Vineyard",
                         "Rice Paddy", "Barley Plot", "Greenhouse", "South Field",
                         "Canal Bank", "Hop Garden", "Seed Nursery"),
            roles={
                "origin": ("Irrigated Plot Probe", "plot where the irrigation water arrives first"),
                "feeder": ("Unirrigated Plot Probe", "plot with no incoming channel whose moisture stays steady"),
                "junction": ("Channel Junction Probe", "plot fed by two or more upstream channels"),
                "relay": ("Channel Probe", "plot passing water from a single upstream plot onward"),
                "terminal": ("Drainage Probe", "lowest plot with no outgoing channel"),
            },
            mechanisms={
                "single": "Irrigation opens at {src} and wets it first; the water then seeps to downstream plots.",
                "multi": "Irrigation valves open together at {srcs}; water seeps to downstream plots.",
                "network_wide": "A rain shower wets every plot at the same time.",
                "calm": "Dry spell with small fluctuations and no irrigation.",
            },
            event_noun="wetting front",
        ),
        _d(
            name="mobility",
            quantity="station ridership",
            unit="passengers/15min",
            sampling_minutes=15,
            level_range=(120.0, 2000.0),
            event_sign=1,
            place_names=("Union Station", "Museum", "Arena", "Docks", "City Hall", "Campus",
                         "Hospital", "Fairground", "Old Market", "Parkside", "Canal Street",
                         "West End"),
            roles={
                "origin": ("Event Venue Station", "station where the crowd surge begins"),
                "feeder": ("Quiet Terminus Station", "terminus with no incoming line whose ridership stays flat"),
                "junction": ("Interchange Station", "station where two or more incoming lines meet"),
                "relay": ("Through Station", "station passing riders from a single upstream station onward"),
                "terminal": ("End-of-Line Station", "last station with no outgoing line"),
            },
            mechanisms={
                "single": "A concert ends at {src}; the crowd surge appears there first and rides on to downstream stations.",
                "multi": "Crowds leave events at the same time at {srcs} and ride on to downstream stations.",
                "network_wide": "A citywide fare-free transit day lifts ridership at every station at the same time.",
                "calm": "Ordinary ridership with small fluctuations and no crowd surge.",
            },
            event_noun="crowd surge",
        ),
        _d(
            name="climate",
            quantity="air temperature",
            unit="degC",
            sampling_minutes=60,
            level_range=(12.0, 30.0),
            event_sign=-1,
            place_names=("Coastal Station", "Valley Floor", "Ridge Top", "Airport Met",
                         "Lakeshore", "Plateau", "Forest Edge", "Desert Rim", "Harbor Met",
                         "Upland Farm", "River Delta", "Hill Village"),
            roles={
                "origin": ("Front Arrival Station", "station where the cold front arrives first"),
                "feeder": ("Shielded Station", "station with no incoming air path whose temperature stays steady"),
                "junction": ("Convergence Station", "station receiving air from two or more stations"),
                "relay": ("Pass-Through Station", "station passing air from a single station onward"),
                "terminal": ("Leeward Station", "last station with no outgoing air path"),
            },
            mechanisms={
                "single": "A cold front reaches {src} first and cools it; the cold air then advects to downwind stations.",
                "multi": "Cold outflows start together at {srcs} and advect to downwind stations.",
                "network_wide": "A passing cloud deck cools every station at the same time.",
                "calm": "Settled weather with small fluctuations and no front.",
            },
            event_noun="cold front",
        ),
    ]
}

DOMAIN_NAMES: tuple[str, ...] = tuple(DOMAINS)
