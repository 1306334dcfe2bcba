/**
 * Hand-written topic lexicon for the offline classifier (functions/news/classify.ts).
 *
 * Written from general knowledge of news vocabulary (institutions, places,
 * leaders, sports leagues and teams, companies, science and technology terms);
 * no entries are learned from or copied out of any data set.
 *
 * Format: per topic, a map from weight to a space-separated list of terms.
 *  - `word`      matches the lowercased token exactly (possessive 's removed)
 *  - `stem*`     matches every token starting with `stem` (at least 3 letters)
 *  - `two_words` matches two consecutive tokens; a matched pair is not also
 *                counted word by word ("car_bomb" is not a "car", "west_bank" not a "bank")
 * Dotted acronyms are collapsed before matching ("U.N." -> "un", "U.S." -> "us").
 * A term may appear under several topics with different weights; within one
 * topic the highest weight wins.
 */
export type LexiconTable = Record<string, Record<string, string>>;

export const LEXICON: LexiconTable = {
  world: {
    "3": `iraq   baghdad falluja fallujah najaf mosul ramadi samarra kirkuk basra tikrit sadr allawi zarqawi saddam
      afghanistan   kabul karzai taliban qaeda al-qaeda al-qaida qaida bin_laden
      israel     gaza jerusalem west_bank arafat abbas hamas hezbollah fatah
      iran  tehran khatami syria  damascus lebanon  beirut
      saudi riyadh kuwait yemen egypt  cairo libya gadhafi qaddafi sudan  darfur khartoum
      pakistan  islamabad musharraf karachi kashmir new_delhi
      nepal maoist maoists sri_lanka tamil bangladesh dhaka
      north_korea pyongyang seoul taiwan  chen_shui-bian hu_jintao wen_jiabao
      koizumi indonesia  jakarta bali philippines  manila arroyo thailand bangkok
      malaysia myanmar burma  vietnam  cambodia
      russia   moscow kremlin putin chechnya chechen chechens beslan ukraine  kiev yushchenko yanukovich
      belarus tbilisi armenia azerbaijan uzbekistan kazakhstan
      chirac blair downing_street schroeder berlusconi zapatero balkenende
      kosovo serbia  bosnia croatia belgrade macedonia albania cyprus turkey  ankara istanbul
      haiti  aristide venezuela  chavez caracas colombia  bogota cuba  castro havana
      peru bolivia ecuador   lula
      zimbabwe mugabe congo  rwanda burundi uganda kenya  nairobi somalia ethiopia eritrea nigeria 
      ivory_coast liberia sierra_leone angola zambia mozambique namibia
      northern_ireland belfast sinn_fein ira basque eta
      nato annan un united_nations security_council peacekeepers peacekeeping iaea elbaradei red_cross unicef unhcr
      african_union asean apec al-jazeera jazeera
      militant militants insurgent insurgents insurgency rebel rebels guerrilla guerrillas hostage hostages
      kidnap* abduct* beheaded beheading suicide_bomber suicide_bombing suicide_attack car_bomb roadside_bomb
      airstrike airstrikes air_strike air_strikes shelling gunmen mortar mortars grenade grenades landmine
      tsunami refugees refugee genocide humanitarian ceasefire cease-fire truce junta coup dictator warlord warlords
      sunni sunnis shiite shiites shia kurd kurds kurdish cleric clerics mullah ayatollah jihad islamist islamists
      war_crimes tribunal massacre assassinat* martial_law curfew
      prime_minister foreign_minister defense_minister interior_minister foreign_ministry`,
    "2": `iraqi iraqis afghan afghans israeli israelis palestinian palestinians iranian syrian lebanese egyptian sudanese pakistani taiwanese indonesian philippine burmese vietnamese russian russians ukrainian serbian turkish haitian venezuelan colombian cuban argentine chilean congolese kenyan nigerian
      troops soldiers soldier army military marines marine militia forces ambush bomb bombs bombing bombings blast blasts
      explosion explosions explosive explosives killed killing killings wounded casualties civilians attack attacks attacked
      raid raids war wars invasion occupation terror terroris* extremist extremists
      diplomat diplomats diplomatic diplomacy embassy ambassador envoy envoys
      minister ministers ministry premier parliament parliamentary opposition regime sanctions
      nuclear uranium enrichment weapons arms treaty summit talks negotiators
      prisoners prisoner detainees detainee guantanamo abu_ghraib torture execution executed
      protest protesters protests demonstrators riot riots police arrested
      referendum
      earthquake quake floods flood flooding storm storms tropical_storm hurricane hurricanes evacuat* typhoon cyclone disaster death_toll survivors relief
      pope vatican muslim muslims islamic christian christians church mosque
      european_union eu brussels commonwealth palestine
      africa african asia asian europe european middle_east arab arabs latin_america
      britain british london france french paris germany german italy italian spain spanish madrid greece greek
      china chinese beijing japan japanese tokyo korea korean australia australian canada canadian mexico mexican
      india indian indians brazil brazilian argentina chile thai
      independence sovereignty border borders territory occupied settlement settlements settlers
      pentagon nobel_peace peace_prize pilgrims exile exiled asylum amnesty human_rights`,
    "1": `government governments official officials leader leaders country countries nation nations national
      province provincial region regional villagers village residents authorities spokesman
      crisis conflict violence dead death deaths injured shot shooting gun guns
      foreign international king queen prince royal monarch state-run afp xinhua`,
  },
  politics: {
    "3": `kerry cheney nader rumsfeld ashcroft
      republican republicans democrat democrats democratic gop senate senator senators congress congressional
      congressman congresswoman lawmakers legislators legislature legislative white_house
      presidential electoral swing_state swing_states running_mate
      nominee nomination inauguration governor gubernatorial schwarzenegger
      filibuster impeachment supreme_court homeland_security`,
    "2": `bush edwards powell rice election elections vote voters voting poll polls ballot ballots caucus
      administration campaign campaigning candidate candidates debate debates mayor
      legislation veto lobby lobbyists partisan bipartisan conservative conservatives liberal liberals tory tories labour
      constitution constitutional amendment justice_department
      political politics politician politicians party parties`,
    "1.5": `court judge policy policies`,
    "1": `president federal washington tax taxes budget reform primary bill bills law laws`,
  },
  business: {
    "3": `profit profits earnings quarterly revenue revenues shareholders shareholder stockholders
      merger mergers acquisition acquisitions acquire acquires acquired takeover buyout bidder
      ipo dividend dividends bankruptcy bankrupt chapter_11 creditors restructuring layoffs net_loss net_income
      ceo cfo chief_executive chief_financial executives
      retailer retailers retail wal-mart walmart kmart sears costco home_depot
      airline airlines united_airlines us_airways american_airlines jetblue
      boeing airbus automaker automakers general_motors chrysler daimlerchrysler toyota honda nissan volkswagen
      exxon exxonmobil chevron chevrontexaco conocophillips halliburton
      pfizer merck glaxosmithkline novartis eli_lilly bristol-myers
      citigroup jpmorgan morgan_stanley goldman goldman_sachs merrill merrill_lynch wells_fargo aig
      berkshire buffett enron worldcom tyco parmalat yukos gazprom
      coca-cola pepsico mcdonald nike viacom comcast time_warner
      kraft nestle unilever procter gillette
      wto tariff tariffs quota quotas textile textiles exporter exporters`,
    "2": `company companies firm firms corporation corporate business businesses industry industries industrial
      stock stocks share shares investor investors investment investments fund funds
      price prices pricing cost costs sale sales sold buy buys buying bid bids offer deal deals
      billion million percent econom* growth inflation recession
      consumer consumers spending demand supply supplier suppliers manufactur*
      factory factories plant plants production output orders exports imports trade trading surplus
      oil crude barrel barrels opec gasoline fuel energy refinery refineries pipeline natural_gas
      jobs jobless unemployment payrolls employment hiring wages pension pensions workers employees
      outsourcing forecast outlook estimates analysts analyst expectations guidance
      insurer insurers insurance bank banks banking banker bankers lender lenders loan loans mortgage mortgages
      regulators regulator antitrust sec fraud accounting audit lawsuit
      brand brands store stores shoppers shopping holiday_season chain
      cars vehicle vehicles truck trucks steel aluminum chemicals pharmaceutical* drugmaker drugmakers biotech*
      tourism hotel hotels restaurant restaurants carrier carriers fares
      executive chairman subsidiary unit units division stake owner owners venture partnership
      tobacco brewer billionaire tycoon giant drug_maker drug_makers steelmaker carmaker carmakers toymaker outperform downgrade downgraded upgraded travel travelers ford gm bp shell disney`,
    "1.5": `inc corp co ltd plc llc ag delta continental northwest southwest`,
    "1": `strike strikes contract contracts union unions car money cash pay paid fees customers customer clients client
      quarter year-earlier fiscal annual results profit-taking`,
  },
  finance: {
    "3": `wall_street nasdaq dow dow_jones s&p nikkei ftse dax stock_market stock_exchange nyse
      federal_reserve fed greenspan interest_rate interest_rates rate_hike rate_cut central_bank ecb
      treasury treasuries bond bonds yields dollar euro yen sterling currency currencies forex
      blue_chip blue_chips indexes indices futures hedge_fund hedge_funds mutual_fund mutual_funds
      brokerage broker brokers traders trading_day securities equities`,
    "2": `stocks shares investors markets market rally rallied slump slumped tumble tumbled plunge plunged soared
      gains gained fell rose benchmark inflation
      gdp recession deficit trade_deficit consumer_prices imf world_bank debt credit lending borrowing`,
    "1": `index rate rates money points losses`,
  },
  technology: {
    "3": `software microsoft* linux unix open-source open_source computer computers computing pc pcs laptop laptops
      server servers mainframe desktop desktops internet web website websites browser browsers firefox mozilla
      google yahoo msn aol amazon.com ebay netscape search_engine search_engines e-mail email emails spam spammer spammers
      spyware adware phishing viruses worm worms trojan hacker hackers hacking cyber* malware vulnerability
      vulnerabilities patch patches firewall encryption password passwords
      wireless wi-fi wifi wimax bluetooth broadband dsl cable_modem voip telecom* 3g rfid
      cellphone cellphones cell_phone cell_phones handset handsets smartphone smartphones blackberry palm palmone pda pdas treo
      chip chips chipmaker chipmakers semiconductor* processor processors microprocessor* transistor*
      intel amd ibm hewlett-packard dell apple ipod ipods itunes macintosh sun_microsystems oracle sap peoplesoft
      cisco nokia motorola ericsson qualcomm texas_instruments nvidia toshiba fujitsu samsung
      novell red_hat redhat suse sco adobe symantec mcafee macromedia realnetworks verisign icann akamai
      siebel computer_associates emc veritas unisys accenture lenovo acer kodak xerox lexmark
      verizon at&t sbc bellsouth qwest t-mobile vodafone cingular nextel skype vonage tivo netflix
      gmail hotmail ask_jeeves lycos friendster orkut napster kazaa riaa grokster
      xbox playstation nintendo gamecube psp video_game video_games videogame videogames gamers gaming console consoles
      dvd dvds hdtv lcd gadget gadgets download downloads downloading file-sharing filesharing peer-to-peer p2p piracy
      mp3 mp3_player mp3_players music_player media_player dvd_player podcast* blog blogs blogger bloggers rss
      wiki xml java javascript html database databases operating_system operating_systems source_code service_pack sp2
      longhorn itanium pentium athlon opteron centrino
      tech technolog* high-tech hi-tech programmer programmers programming
      silicon_valley zdnet cnet eweek infoworld pcworld pc_world techweb newsfactor macworld ars_technica slashdot
      gartner idc forrester bill_gates steve_jobs ballmer torvalds`,
    "2.5": `online digital`,
    "2": `network networks networking users user data site sites service_provider isp isps
      domain domains application applications upgrade beta code developer developers
      screen keyboard printer printers camera cameras robot robots robotic
      phone phones mobile satellite_radio xm sirius sony hp mac os gateway
      electronics electronic consumer_electronics gigabyte megabyte terabyte bandwidth storage
      flaw flaws bug bugs device devices search engine engines portal messaging instant_messaging chat
      copyright patent patents licensing license licenses`,
    "1": `security system systems launch launches launched version features`,
  },
  science: {
    "3": `nasa esa spacecraft space_station shuttle astronaut astronauts cosmonaut spaceflight orbit orbiting orbital
      mars martian rover rovers saturn cassini huygens titan jupiter pluto comet comets asteroid asteroids
      telescope hubble galaxy galaxies astronom* astrophysic* universe cosmic meteor meteorite crater
      scien* researcher researchers physicist physicists chemist chemists biologist biologists geologist geologists
      physics chemistry biology biologic* geology genetic* genome genomes gene genes dna rna protein proteins
      molecule molecules molecular stem_cell stem_cells cloning cloned embryo embryos embryonic
      species fossil fossils dinosaur dinosaurs evolution evolutionary extinct extinction primate primates
      archaeolog* neanderthal mammal mammals reptile reptiles insects bacteria bacterium microbe microbes enzyme
      coral reef reefs whales whale dolphin dolphins chimpanzee chimpanzees chimps apes gorilla gorillas
      laboratory lab labs experiment experiments nanotech* nanoparticles quantum particle particles laser lasers
      atom atoms neutron electron electrons spaceshipone x_prize space.com rocket lander space_agency`,
    "2": `space moon lunar solar planet planets planetary earth atmosphere
      research study studies findings discovered discovery
      ancient bird birds fish frog frogs ants monkey monkeys mice rats elephants turtle turtles bees butterflies spider snake snakes
      animals animal wildlife zoo endangered habitat ecosystem forest forests
      volcano volcanic volcanoes earthquake seismic tectonic mercury cell cells brain`,
    "1": `found suggests suggest theory star stars sun nature journal mission probe venus`,
  },
  health: {
    "3": `health healthcare health_care medical medicine medicines patients patient hospital hospitals doctors physicians
      nurses fda vaccine vaccines vaccination flu influenza bird_flu sars hiv aids malaria tuberculosis polio ebola
      cancer cancers tumor tumors diabetes obesity obese heart_disease heart_attack alzheimer autism asthma
      prescription vioxx celebrex painkiller antidepressant* antibiotic* clinical_trial clinical_trials
      disease diseases infection infections outbreak epidemic pandemic symptoms diagnosis therapy
      transplant smoking smokers cholesterol blood_pressure dietary nutrition calories vitamin vitamins hormone
      cdc medicare medicaid mental_health`,
    "2.5": `drug drugs`,
    "2": `virus infected surgery stroke diet exercise fitness pill pills insulin sleep depression pregnancy pregnant babies infants`,
    "1": `study risk risks children women elderly`,
  },
  climate: {
    "3": `climate climate_change global_warming greenhouse greenhouse_gases greenhouse_gas emissions kyoto carbon_dioxide co2
      warming glacier glaciers arctic antarctic antarctica ice_sheet sea_level drought droughts
      environmentalists pollution renewable renewables solar_power wind_power`,
    "2": `environment environmental carbon temperatures temperature weather rainfall ozone`,
    "1.5": `hurricane hurricanes storm storms`,
  },
  education: {
    "2": `school schools student students teacher teachers classroom classrooms education educational tuition
      university universities campus professor professors curriculum pupils kindergarten`,
    "1": `college colleges academic graduate graduates`,
  },
  entertainment: {
    "3": `movie movies film films hollywood box_office actor actress actors oscar oscars emmy grammy
      singer songwriter album albums concert concerts rock_band pop_star celebrity celebrities
      sitcom reality_show broadway theater theatre novel novelist
      spider-man shrek harry_potter star_wars`,
    "2": `tv television studio studios premiere song songs band author`,
    "1.5": `music`,
    "1": `star starring director show shows fans`,
  },
  sports: {
    "3": `nfl nba nhl mlb nascar pga lpga fifa uefa ncaa wnba atp wta ioc
      olympic olympics olympian olympians paralympic* medal medals medalist medallist gold_medal silver_medal bronze_medal
      quarterback quarterbacks touchdown touchdowns interception interceptions fumble fumbles linebacker linebackers
      cornerback tailback running_back wide_receiver field_goal kicker punt punter rushing yards
      inning innings pitcher pitchers pitching homer homers home_run home_runs rbi rbis bullpen shortstop outfielder
      batting   hitter hitters strikeout strikeouts no-hitter doubleheader slugger mvp
      playoff playoffs postseason preseason offseason pennant world_series super_bowl all-star spring_training
      nba_finals rebounds assists three-pointer dunk point_guard
      hockey puck goalie goaltender stanley_cup power_play
      soccer footballer footballers striker midfielder goalkeeper premiership premier_league champions_league
      world_cup euro_2004 la_liga serie_a bundesliga hat-trick hat_trick equaliser equalizer goalless
      tennis wimbledon us_open french_open australian_open grand_slam semifinal semifinals semi-final semi-finals
      quarterfinal quarterfinals quarter-final quarter-finals
      golf golfer golfers birdie birdies bogey bogeys putt fairway ryder_cup masters pga_tour
      cricket cricketer cricketers wicket wickets batsman batsmen bowler test_match
      rugby boxing boxer heavyweight middleweight knockout bout
      formula_one grand_prix schumacher pole_position laps
      marathon sprinter sprinters relay hurdles swimmer swimmers swimming gymnast gymnasts gymnastics
      cycling cyclist tour_de skating skier skiing jockey racehorse
      baseball basketball football stadium ballpark coach coaches coaching
      patriots colts steelers broncos raiders chiefs chargers cowboys redskins packers vikings
      falcons buccaneers bucs seahawks 49ers niners ravens bengals browns jaguars texans
      yankees red_sox mets braves marlins phillies expos cubs astros brewers dodgers padres rockies
      diamondbacks mariners white_sox orioles blue_jays devil_rays
      lakers celtics knicks sixers 76ers raptors pistons pacers cavaliers cavs bobcats
      spurs mavericks mavs grizzlies clippers sonics trail_blazers timberwolves
      maple_leafs canadiens bruins flyers islanders sabres thrashers red_wings blackhawks oilers canucks
      arsenal chelsea liverpool everton tottenham man_utd manchester_united real_madrid juventus
      ac_milan inter_milan bayern_munich
      wolverines buckeyes longhorns sooners gators seminoles tar_heels crimson_tide hawkeyes
      nittany_lions jayhawks razorbacks cornhuskers fighting_irish notre_dame hokies terrapins boilermakers`,
    "2": `game games season seasons team teams league leagues club clubs player players championship championships
      champion champions title titles tournament cup match matches scored score scores scoring
      goal goals rookie veteran roster draft drafted free_agent injury injuries sidelined
      races racing finish finished finishing seed seeded top-seeded
      captain squad ball bat final finals opener streak unbeaten undefeated
      sports sport athlete athletes teammate teammates doubles singles derby tee
      eagles jets giants cardinals rangers tigers twins angels athletics indians royals reds pirates
      bears lions panthers saints rams titans dolphins bills
      bulls nets heat hawks bucks rockets suns kings warriors blazers jazz nuggets hornets magic
      penguins devils lightning capitals blues predators avalanche flames sharks coyotes ducks stars wild
      barcelona newcastle ajax celtic porto valencia
      trojans huskies badgers volunteers bulldogs wildcats cougars aggies spartans gophers ferrari
      armstrong eagle par batter batters hoops rout
      blackburn rovers charlton fulham bolton portsmouth southampton aston_villa middlesbrough west_brom norwich crystal_palace
      hibernian hearts deportivo wolves seamer paceman spinner odi one-day test_series knee ankle hamstring groin arthroscopic`,
    "1.5": `win wins winning won victory victories defeat defeated defeats beat beats beating points manager lose losing`,
    "1": `record win-loss lead led trailing against home away first-round second-round runner-up tie tied overtime
      race draw forward driver drivers round rounds sprint injured loss losses`,
  },
};

/** Cue phrases that are not single tokens (regular expressions on the normalized, original-case text). */
export const PATTERN_CUES: Array<{ topic: string; weight: number; pattern: RegExp }> = [
  // Scorelines ("beat Boston 5-3", "a 28-14 win").
  { topic: "sports", weight: 1.5, pattern: /\b\d{1,3}-\d{1,3}\b(?!-)/g },
  // College rankings ("No. 5 Miami").
  { topic: "sports", weight: 2, pattern: /\bNo\. \d{1,2} [A-Z]/g },
  // Money amounts ("$10 million", "$2.5 billion").
  { topic: "business", weight: 1, pattern: /\$\s?\d[\d,.]*(?:\s*(?:million|billion|bn|mln))?/gi },
  // Ticker quotes that wire services put after company names ("(NYSE: IBM)", "SPLS.O").
  { topic: "business", weight: 1.5, pattern: /\((?:NYSE|NASDAQ|Nasdaq|AMEX|LSE)\s?:\s?[A-Z.]+\)|\b[A-Z]{2,5}\.[NOL]\b/g },
];
