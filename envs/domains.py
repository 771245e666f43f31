"""The ten scenario domains: units, sampling intervals, magnitudes and all domain text.

A `Domain` is pure data. The simulator works on a dimensionless level `Y ~ 1` per node
(see `envs.sde`); a domain maps it to physical units with a per-node level drawn from
`level_range` (traffic speed 40-100 km/h, river discharge 80-1500 m3/s, ...), and says
whether its events raise or lower the observed quantity (congestion lowers speed).

Texts are written so that every statement a question relies on is checkable from the
prompt: role texts state how a node's departure lines up with those of the nodes linking
into it and of the nodes it links to (read off the series and the graph together); scenario
texts name the nodes where a disturbance starts. Role names are deliberately distinct (no
near-synonyms).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("origin", "local_start", "relay", "dead_end", "merge", "merge_end")
"""Node roles used by the `entity` task: how many of a departing node's upstream nodes
departed before it (none: origin / local_start, exactly one: relay / dead_end, two or more:
merge / merge_end) and whether a node it links to departs after it (the first of each
pair) or none does (the second). See `envs.tasks.entity`."""

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
                "origin": ("Incident Sensor", "segment where a slowdown starts before any road feeding it has slowed, and a road it feeds slows after it"),
                "local_start": ("Local Jam Sensor", "segment where a slowdown starts before any road feeding it has slowed, and no road it feeds slows after it"),
                "relay": ("Corridor Sensor", "segment that slows after exactly one road feeding it has slowed, and a road it feeds slows after it"),
                "dead_end": ("Queue Absorber Sensor", "segment that slows after exactly one road feeding it has slowed, and no road it feeds slows after it"),
                "merge": ("Merge Sensor", "segment that slows after two or more roads feeding it have slowed, and a road it feeds slows after it"),
                "merge_end": ("Gridlock Pocket Sensor", "segment that slows after two or more roads feeding it have slowed, and no road it feeds slows after it"),
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
                "origin": ("Surge Start Substation", "substation where a load surge starts before any substation feeding it has surged, and a substation it supplies surges after it"),
                "local_start": ("Isolated Surge Substation", "substation where a load surge starts before any substation feeding it has surged, and no substation it supplies surges after it"),
                "relay": ("Transfer Substation", "substation that surges after exactly one substation feeding it has surged, and a substation it supplies surges after it"),
                "dead_end": ("Absorbing Substation", "substation that surges after exactly one substation feeding it has surged, and no substation it supplies surges after it"),
                "merge": ("Collector Substation", "substation that surges after two or more substations feeding it have surged, and a substation it supplies surges after it"),
                "merge_end": ("Overload Sink Substation", "substation that surges after two or more substations feeding it have surged, and no substation it supplies surges after it"),
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
                "origin": ("Emission Monitor", "site where a pollution episode starts before any site sending air to it has risen, and a site it sends air to rises after it"),
                "local_start": ("Local Hotspot Monitor", "site where a pollution episode starts before any site sending air to it has risen, and no site it sends air to rises after it"),
                "relay": ("Transit Monitor", "site that rises after exactly one site sending air to it has risen, and a site it sends air to rises after it"),
                "dead_end": ("Settling Monitor", "site that rises after exactly one site sending air to it has risen, and no site it sends air to rises after it"),
                "merge": ("Convergence Monitor", "site that rises after two or more sites sending air to it have risen, and a site it sends air to rises after it"),
                "merge_end": ("Trapped Plume Monitor", "site that rises after two or more sites sending air to it have risen, and no site it sends air to rises after it"),
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
                "origin": ("Outbreak Patch", "patch where a population boom starts before any patch sending dispersers to it has boomed, and a patch it sends dispersers to booms after it"),
                "local_start": ("Isolated Boom Patch", "patch where a population boom starts before any patch sending dispersers to it has boomed, and no patch it sends dispersers to booms after it"),
                "relay": ("Corridor Patch", "patch that booms after exactly one patch sending dispersers to it has boomed, and a patch it sends dispersers to booms after it"),
                "dead_end": ("Sink Patch", "patch that booms after exactly one patch sending dispersers to it has boomed, and no patch it sends dispersers to booms after it"),
                "merge": ("Gathering Patch", "patch that booms after two or more patches sending dispersers to it have boomed, and a patch it sends dispersers to booms after it"),
                "merge_end": ("Crowded Dead-End Patch", "patch that booms after two or more patches sending dispersers to it have boomed, and no patch it sends dispersers to booms after it"),
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
                "origin": ("Index City", "city where an outbreak starts before any city with a travel link into it has surged, and a city it has a travel link to surges after it"),
                "local_start": ("Contained Outbreak Town", "city where an outbreak starts before any city with a travel link into it has surged, and no city it has a travel link to surges after it"),
                "relay": ("Transit Town", "city that surges after exactly one city with a travel link into it has surged, and a city it has a travel link to surges after it"),
                "dead_end": ("Firebreak Town", "city that surges after exactly one city with a travel link into it has surged, and no city it has a travel link to surges after it"),
                "merge": ("Travel Hub City", "city that surges after two or more cities with travel links into it have surged, and a city it has a travel link to surges after it"),
                "merge_end": ("Quarantine Hub City", "city that surges after two or more cities with travel links into it have surged, and no city it has a travel link to surges after it"),
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
                "origin": ("Storm Catchment Gauge", "gauge where a flood wave starts before any gauge draining into it has risen, and a gauge it drains into rises after it"),
                "local_start": ("Local Cloudburst Gauge", "gauge where a flood wave starts before any gauge draining into it has risen, and no gauge it drains into rises after it"),
                "relay": ("Mid-Reach Gauge", "gauge that rises after exactly one gauge draining into it has risen, and a gauge it drains into rises after it"),
                "dead_end": ("Retention Basin Gauge", "gauge that rises after exactly one gauge draining into it has risen, and no gauge it drains into rises after it"),
                "merge": ("Confluence Gauge", "gauge that rises after two or more gauges draining into it have risen, and a gauge it drains into rises after it"),
                "merge_end": ("Floodplain Sink Gauge", "gauge that rises after two or more gauges draining into it have risen, and no gauge it drains into rises after it"),
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
                "origin": ("Swell Entry Buoy", "buoy where a swell starts before any buoy sending swell to it has risen, and a buoy it sends swell to rises after it"),
                "local_start": ("Local Squall Buoy", "buoy where a swell starts before any buoy sending swell to it has risen, and no buoy it sends swell to rises after it"),
                "relay": ("Midfield Buoy", "buoy that rises after exactly one buoy sending swell to it has risen, and a buoy it sends swell to rises after it"),
                "dead_end": ("Breakwater Buoy", "buoy that rises after exactly one buoy sending swell to it has risen, and no buoy it sends swell to rises after it"),
                "merge": ("Convergence Buoy", "buoy that rises after two or more buoys sending swell to it have risen, and a buoy it sends swell to rises after it"),
                "merge_end": ("Swell Trap Buoy", "buoy that rises after two or more buoys sending swell to it have risen, and no buoy it sends swell to rises after it"),
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
                "origin": ("Irrigated Plot Probe", "plot where a wetting front starts before any plot whose channel feeds it has wetted up, and a plot its channel feeds wets up after it"),
                "local_start": ("Spot-Watered Plot Probe", "plot where a wetting front starts before any plot whose channel feeds it has wetted up, and no plot its channel feeds wets up after it"),
                "relay": ("Channel Probe", "plot that wets up after exactly one plot whose channel feeds it has wetted up, and a plot its channel feeds wets up after it"),
                "dead_end": ("Soak-Up Plot Probe", "plot that wets up after exactly one plot whose channel feeds it has wetted up, and no plot its channel feeds wets up after it"),
                "merge": ("Channel Junction Probe", "plot that wets up after two or more plots whose channels feed it have wetted up, and a plot its channel feeds wets up after it"),
                "merge_end": ("Sump Plot Probe", "plot that wets up after two or more plots whose channels feed it have wetted up, and no plot its channel feeds wets up after it"),
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
                "origin": ("Event Venue Station", "station where a crowd surge starts before any station sending riders to it has surged, and a station it sends riders to surges after it"),
                "local_start": ("Local Crowd Station", "station where a crowd surge starts before any station sending riders to it has surged, and no station it sends riders to surges after it"),
                "relay": ("Through Station", "station that surges after exactly one station sending riders to it has surged, and a station it sends riders to surges after it"),
                "dead_end": ("Dispersal Station", "station that surges after exactly one station sending riders to it has surged, and no station it sends riders to surges after it"),
                "merge": ("Interchange Station", "station that surges after two or more stations sending riders to it have surged, and a station it sends riders to surges after it"),
                "merge_end": ("Crowd Sink Station", "station that surges after two or more stations sending riders to it have surged, and no station it sends riders to surges after it"),
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
                "origin": ("Front Arrival Station", "station where a cold spell starts before any station sending air to it has cooled, and a station it sends air to cools after it"),
                "local_start": ("Local Chill Station", "station where a cold spell starts before any station sending air to it has cooled, and no station it sends air to cools after it"),
                "relay": ("Pass-Through Station", "station that cools after exactly one station sending air to it has cooled, and a station it sends air to cools after it"),
                "dead_end": ("Warming Buffer Station", "station that cools after exactly one station sending air to it has cooled, and no station it sends air to cools after it"),
                "merge": ("Convergence Station", "station that cools after two or more stations sending air to it have cooled, and a station it sends air to cools after it"),
                "merge_end": ("Cold Pool Station", "station that cools after two or more stations sending air to it have cooled, and no station it sends air to cools after it"),
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
