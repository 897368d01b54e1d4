# Builds an evaluation set of melodic copies from music that is NOT in refrain's development set
# (see README.md beside this file).
#
# usage: /work/dev/venv/bin/python eval/other-sources/make-set.py OUTDIR
#        (needs numpy, music21, pretty_midi; fluidsynth, sox, FluidR3_GM and TimGM6mb sound fonts)
#
# Sources (music21 corpus, offline): Ryan's Mammoth Collection (American fiddle tunes, 1883),
# the Essen folk-song collection's German songs (ballads, Erk, Boehme, Altdeutsch, ...) and its
# Chinese songs (han1, han2). Nothing from O'Neill's 1850 or the Bach chorales.
#
# Deterministic: fixed seeds, sorted inputs; finished files are skipped when re-run.
import os, sys, time, random, zlib, subprocess, tempfile, wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pretty_midi

if len(sys.argv) != 2:
    sys.exit("usage: make-set.py OUTDIR")
OUT = os.path.abspath(sys.argv[1])
T0 = time.time()
SR = 22050
SF_TRAIN = '/usr/share/sounds/sf2/FluidR3_GM.sf2'   # training items and negatives rendered like them
SF_QUERY = '/usr/share/sounds/sf2/TimGM6mb.sf2'     # queries (and negatives rendered like queries)
SEED = 20261204

# GM programs. The dev set trains on piano/accordion/harp and queries flute, violin, clarinet,
# trumpet, oboe, voice, guitar, marimba, alto sax, whistle: these avoid all of them.
TRAIN_PROGS = [6, 11, 22, 26]            # harpsichord, vibraphone, harmonica, jazz guitar
TRAIN_BPM = [84, 116, 126, 96]           # quarter notes per minute (dev: 92, 100, 108)
QUERY_PROGS = [105, 41, 70, 64, 72, 13, 79, 75, 69, 110, 60, 16]
#              banjo viola bassoon soprano-sax piccolo xylophone ocarina pan-flute english-horn
#              fiddle french-horn drawbar-organ
ACC_PROGS = [25, 1, 49, 5]               # steel guitar (arpeggio), bright piano (oom-pah),
                                         # slow strings (pad), e-piano 2 (arpeggio)
SEMIS = [-5, 2, 6, -1, 4, -3, 1, -6, 3, -2, 5, -4]
TEMPO = [1.3, 0.78, 1.2, 0.85, 1.1, 0.75, 1.33, 0.92]
MIN_S, MAX_S = 26.0, 40.0                # tune length at the training tempo (repeated / cut to fit)
QUERY_S = 30.0                           # queries are cut to at most this


def log(m):
    print(f"[{time.time() - T0:6.1f}s] {m}", flush=True)


def mkdir(*p):
    x = os.path.join(OUT, *p); os.makedirs(x, exist_ok=True); return x


TRAIN, NEG, MIDI = mkdir('train'), mkdir('neg'), mkdir('midi')
CLASSES = ('melody_solo', 'melody_accomp', 'melody_varied', 'copy_excerpt')
QDIR = {c: mkdir('query', c) for c in CLASSES}


def exists(p):
    return os.path.exists(p) and os.path.getsize(p) > 0


# ------------------------------------------------------------------ reading tunes
from music21 import corpus, key as m21key

CORPUS_DIR = os.path.dirname(corpus.__file__)


def abc_numbers(path):
    """the X: numbers of an ABC file, in file order"""
    out = []
    with open(path, encoding='latin-1') as f:
        for line in f:
            if line.startswith('X:'):
                try:
                    out.append(int(line[2:].strip()))
                except ValueError:
                    pass
    return out


def melody_of(sc):
    """(notes [(pitch, onset_q, dur_q)], bar_q, pickup_q, Key) of a one-line tune, or None"""
    try:
        sc = sc.expandRepeats()
    except Exception:
        pass
    part = sc.parts[0] if getattr(sc, 'parts', None) else sc
    part = part.stripTies()
    notes = []
    for n in part.recurse().notes:
        ql = float(n.quarterLength)
        if ql <= 0:                      # grace notes
            continue
        off = float(n.getOffsetInHierarchy(part))
        if n.isChord:                    # fiddle double stops: the top note is the tune
            p = max(x.midi for x in n.pitches)
        else:
            p = n.pitch.midi
        notes.append((p, off, ql))
    if len(notes) < 32:
        return None
    notes.sort(key=lambda x: x[1])
    t0 = notes[0][1]
    if (max(o + d for _, o, d in notes) - t0) / len(notes) > 1.5:   # mostly long notes: too little melody
        return None
    ts = list(part.recurse().getElementsByClass('TimeSignature'))
    bar = float(ts[0].barDuration.quarterLength) if ts else 4.0
    ms = list(part.getElementsByClass('Measure'))
    pickup = 0.0
    if len(ms) > 1:
        pickup = (float(ms[1].offset) - t0) % bar
    notes = [(p, o - t0, d) for p, o, d in notes]
    try:
        k = sc.analyze('key')
    except Exception:
        k = m21key.Key('C')
    return notes, bar, pickup, k


def intervals(notes):
    return [b[0] - a[0] for a, b in zip(notes, notes[1:])]


def grams(notes, n=5):
    iv = intervals(notes)
    return {tuple(iv[i:i + n]) for i in range(len(iv) - n + 1)}


def load_collection(tag, files, want, rng):
    """up to `want` tunes from the given (ABC file, X number or None) list, in a seeded order"""
    items = list(files)
    rng.shuffle(items)
    out = []
    for path, num in items:
        if len(out) >= want:
            break
        rel = os.path.relpath(path, CORPUS_DIR)
        try:
            sc = corpus.parse(rel, number=num) if num is not None else corpus.parse(rel)
            if hasattr(sc, 'scores'):        # an Opus came back: take its first score
                sc = sc.scores[0]
            m = melody_of(sc)
        except Exception as e:
            continue
        if m is None:
            continue
        base = os.path.splitext(os.path.basename(path))[0]
        name = f"{tag}_{base}" + (f"_{num:03d}" if num is not None else '')
        name = ''.join(c for c in name if c.isalnum() or c == '_').lower()[:48]
        title = (sc.metadata.title or '').strip().lower() if sc.metadata else ''
        out.append(dict(name=name, title=title, notes=m[0], bar=m[1], pickup=m[2], key=m[3],
                        grams=grams(m[0])))
    return out


# Ryan's Mammoth: one file per tune
ryan_files = [(os.path.join(CORPUS_DIR, 'ryansMammoth', f), None)
              for f in sorted(os.listdir(os.path.join(CORPUS_DIR, 'ryansMammoth'))) if f.endswith('.abc')]
ESSEN = os.path.join(CORPUS_DIR, 'essenFolksong')
DE_FILES = ['altdeu10', 'altdeu20', 'ballad10', 'ballad20', 'ballad30', 'ballad40', 'ballad50',
            'ballad60', 'ballad70', 'ballad80', 'boehme10', 'boehme20', 'dva0', 'erk10', 'erk20',
            'erk30', 'fink0', 'kinder0', 'zuccal0']
de_files = [(f"{ESSEN}/{b}.abc", n) for b in DE_FILES for n in abc_numbers(f"{ESSEN}/{b}.abc")]
han_files = [(f"{ESSEN}/{b}.abc", n) for b in ('han1', 'han2') for n in abc_numbers(f"{ESSEN}/{b}.abc")]

# per collection: 13-14 training tunes, 27 negatives, 17 medley tunes (plus spares for the filter)
PLAN = [('ryan', ryan_files, 14), ('de', de_files, 13), ('han', han_files, 13)]
pools = {}
for tag, files, _ in PLAN:
    pools[tag] = load_collection(tag, files, 95, random.Random(SEED + zlib.crc32(tag.encode())))
    log(f"{tag}: {len(pools[tag])} tunes parsed")


def overlap(a, b):
    return len(a & b) / max(1, min(len(a), len(b)))


train, neg, medley_pool = [], [], []
for tag, _, ntrain in PLAN:
    chosen = []
    for t in pools[tag]:
        if len(chosen) >= ntrain:
            break
        # training tunes must not share phrases with each other (a query would have two right answers)
        if all(overlap(t['grams'], u['grams']) <= 0.2 and t['title'] != u['title'] for u in train + chosen):
            chosen.append(t)
    train += chosen
TGRAMS = [t['grams'] for t in train]
TTITLES = {t['title'] for t in train}
used = {t['name'] for t in train}
for tag, _, _ in PLAN:
    ok = [t for t in pools[tag] if t['name'] not in used and t['title'] not in TTITLES
          and all(overlap(t['grams'], g) <= 0.2 for g in TGRAMS)]
    neg += ok[:27]
    medley_pool += ok[27:27 + 17]
neg = neg[:80]
log(f"training {len(train)}, negatives {len(neg)}, medley tunes {len(medley_pool)}")


# ------------------------------------------------------------------ tune shaping
def fit_length(tune, bpm):
    """repeat the tune until it lasts MIN_S at `bpm`, then cut at the last bar line before MAX_S"""
    notes, bar = tune['notes'], tune['bar']
    end = max(o + d for _, o, d in notes)
    span = np.ceil((end - tune['pickup']) / bar - 1e-6) * bar + tune['pickup']   # whole bars
    reps = int(np.ceil(MIN_S / (span * 60.0 / bpm)))
    out = [(p, o + r * span, d) for r in range(max(1, reps)) for p, o, d in notes]
    limit_q = MAX_S * bpm / 60.0
    if out[-1][1] + out[-1][2] > limit_q:
        cut = tune['pickup'] + np.floor((limit_q - tune['pickup']) / bar) * bar
        out = [(p, o, min(d, cut - o)) for p, o, d in out if o < cut]
    return out


def scale_pcs(k):
    """the 7 pitch classes of the key (harmonic minor for minor keys)"""
    pcs = [p.pitchClass for p in k.getScale('major' if k.mode == 'major' else 'minor').getPitches()[:7]]
    if k.mode == 'minor':
        pcs[6] = (pcs[0] + 11) % 12
    return pcs


def harmony(notes, tune):
    """one diatonic triad (I, IV, V, vi, ii, iii, and minor-key equivalents) per harmonic span"""
    pcs = scale_pcs(tune['key'])
    triads = [(deg, (pcs[deg], pcs[(deg + 2) % 7], pcs[(deg + 4) % 7])) for deg in (0, 3, 4, 5, 1, 2)]
    prior = {0: 0.3, 3: 0.15, 4: 0.2, 5: 0.05, 1: 0.0, 2: -0.05}
    bar = tune['bar']
    span = bar / 2 if bar >= 4 else bar
    end = max(o + d for _, o, d in notes)
    t = tune['pickup'] - span if tune['pickup'] > 0 else 0.0
    out = []
    while t < end - 1e-6:
        w = np.zeros(12)
        for p, o, d in notes:
            ov = min(o + d, t + span) - max(o, t)
            if ov > 0:
                w[p % 12] += ov * (1.5 if abs(o - t) < 1e-6 else 1.0)   # the note on the downbeat counts more
        tot = w.sum() or 1.0
        deg, tri = max(triads, key=lambda x: sum(w[c] for c in x[1]) / tot + prior[x[0]])
        out.append((max(t, 0.0), min(t + span, end) - max(t, 0.0), tri))
        t += span
    return out


def accompaniment(notes, tune, style):
    """a new accompaniment on the tune's implied harmony: 'arp' (broken chord in eighths),
    'oompah' (bass on the beat, chord off the beat) or 'pad' (sustained bass + triad)"""
    bass, upper = [], []
    for t, dur, (r, th, fi) in harmony(notes, tune):
        root = 36 + (r - 36) % 12 + 12                    # C3..B3
        chord = sorted(52 + (c - 52) % 12 for c in (r, th, fi))   # E3..D#4, under most melodies
        if style == 'pad':
            bass.append((root - 12, t, dur * 0.97))
            upper += [(c, t, dur * 0.97) for c in chord]
        elif style == 'oompah':
            b = t
            k = 0
            while b < t + dur - 1e-6:
                if k % 2 == 0:
                    bass.append((root - 12 + (7 if k % 4 == 2 else 0), b, 0.45))
                else:
                    upper += [(c, b, 0.4) for c in chord]
                b += 0.5; k += 1
        else:   # arpeggio: root, fifth, third, fifth, ... in eighth notes
            seq = [root, chord[2] if chord[2] != root + 12 else chord[1], chord[0], chord[1], chord[2], chord[1]]
            b = t; k = 0
            while b < t + dur - 1e-6:
                upper.append((seq[k % len(seq)], b, 0.5))
                b += 0.5; k += 1
            bass.append((root - 12, t, dur * 0.95))
    return bass, upper


def vary(notes, tune, rng):
    """about 12 % of the notes moved by one step of the tune's scale, up or down"""
    pcs = sorted(set(scale_pcs(tune['key'])))
    out = []
    for p, o, d in notes:
        if rng.random() < 0.12:
            up = rng.random() < 0.5
            q = p
            while True:
                q += 1 if up else -1
                if q % 12 in pcs:
                    break
            p = q
        out.append((p, o, d))
    return out


def write_midi(dst, tracks, bpm):
    """tracks: [(program, notes [(pitch, onset_q, dur_q)], velocity)] -> one GM track each"""
    if exists(dst):
        return dst
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    sec = 60.0 / bpm
    for prog, notes, vel in tracks:
        ins = pretty_midi.Instrument(program=prog)
        for p, o, d in notes:
            ins.notes.append(pretty_midi.Note(velocity=vel, pitch=int(min(108, max(21, p))),
                                              start=o * sec, end=(o + max(d, 0.06) * 0.985) * sec))
        pm.instruments.append(ins)
    pm.write(dst + '.tmp'); os.replace(dst + '.tmp', dst)
    return dst


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-500:]}")


def render(mid, dst, sf2, start=0.0, dur=None, gain=0.7):
    """fluidsynth -> 22.05 kHz mono 16-bit wav, optionally one segment, tail silence trimmed to 1 s"""
    if exists(dst):
        return dst
    raw = os.path.join(tempfile.gettempdir(), f"other-sources-{os.getpid()}-{zlib.crc32(dst.encode()):08x}.wav")
    try:
        run(['timeout', '-k', '5', '300', 'fluidsynth', '-ni', '-q', '-g', str(gain), '-r', str(SR),
             '-F', raw, sf2, mid])
        with wave.open(raw, 'rb') as w:
            length = w.getnframes() / w.getframerate()
        pm = pretty_midi.PrettyMIDI(mid)
        stop = min(length, pm.get_end_time() + 1.0)
        seg = ['trim', f'{start:.3f}', f'{(min(stop, start + dur) if dur else stop) - start:.3f}']
        tmp = dst[:-4] + '.tmp.wav'
        # -R -D: sox dithers with a random seed by default, which would make every build differ
        run(['sox', '-R', raw, '-D', '-c', '1', '-r', str(SR), '-b', '16', '-e', 'signed-integer', tmp] + seg)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    return dst


def cut(src, dst, start, dur):
    if not exists(dst):
        tmp = dst[:-4] + '.tmp.wav'
        run(['sox', '-R', src, '-D', tmp, 'trim', f'{start:.3f}', f'{dur:.3f}'])
        os.replace(tmp, dst)
    return dst


def pmap(fn, jobs):
    errs = []
    def one(j):
        try:
            return fn(*j)
        except Exception as e:
            errs.append(f"{j[1] if len(j) > 1 else j}: {e}")
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as ex:
        list(ex.map(one, jobs))
    for e in errs:
        print('ERROR', e, file=sys.stderr)


# ------------------------------------------------------------------ the set
rows = []            # (abs path, expected stem or None, class)
jobs = []            # render jobs
excerpts = []        # (src wav, dst, start, dur) after rendering
rng = random.Random(SEED)
STYLES = ['arp', 'oompah', 'pad', 'arp']

for i, t in enumerate(train):
    prog, bpm = TRAIN_PROGS[i % 4], TRAIN_BPM[(i // 4 + i) % 4]
    stem = t['name']
    mel = fit_length(t, bpm)
    jobs.append((write_midi(f"{MIDI}/{stem}_p{prog}_{bpm}.mid", [(prog, mel, 90)], bpm), f"{TRAIN}/{stem}.wav", SF_TRAIN))
    for k, cls in enumerate(CLASSES[:3]):
        # each class goes through all 12 programs, all 12 transpositions and all 8 tempo factors
        qp, semis, tf = QUERY_PROGS[(i + 4 * k) % 12], SEMIS[(5 * i + 3 * k) % 12], TEMPO[(3 * i + k) % 8]
        qbpm = bpm * tf
        notes = [(p + semis, o, d) for p, o, d in fit_length(t, bpm)]
        tag = f"p{qp}{semis:+d}_x{tf}"
        if cls == 'melody_varied':
            notes = vary(notes, dict(t, key=t['key'].transpose(semis)), random.Random(SEED + 7 * i))
            tracks = [(qp, notes, 92)]
        elif cls == 'melody_accomp':
            style = STYLES[i % 4]
            b, u = accompaniment(notes, dict(t, key=t['key'].transpose(semis)), style)
            ap = ACC_PROGS[i % 4]
            tracks = [(qp, notes, 96), (ap, b, 70), (ap, u, 62)]
            tag += f"_acc-{style}-p{ap}"
        else:
            tracks = [(qp, notes, 92)]
        q = f"{QDIR[cls]}/{stem}__{tag}.wav"
        jobs.append((write_midi(f"{MIDI}/{stem}__{cls}_{tag}.mid", tracks, qbpm), q, SF_QUERY, 0.0, QUERY_S))
        rows.append((q, stem, cls))
    q = f"{QDIR['copy_excerpt']}/{stem}__o8_10s.wav"
    excerpts.append((f"{TRAIN}/{stem}.wav", q, 8.0, 10.0)); rows.append((q, stem, 'copy_excerpt'))

for i, t in enumerate(neg):
    # rendered exactly like training items (same sound font, programs and tempi)
    prog, bpm = TRAIN_PROGS[i % 4], TRAIN_BPM[(i // 4 + i) % 4]
    src = t['name']
    w = f"{NEG}/{src}__p{prog}_{bpm}bpm.wav"
    jobs.append((write_midi(f"{MIDI}/neg_{src}_p{prog}_{bpm}.mid", [(prog, fit_length(t, bpm), 90)], bpm), w, SF_TRAIN))
    rows.append((w, None, 'neg'))
    if i % 2 == 0:   # half also rendered like a query (timbre, key, tempo; every other one accompanied)
        qp, semis, tf = QUERY_PROGS[i % 12], SEMIS[i % 12], TEMPO[i % 8]
        notes = [(p + semis, o, d) for p, o, d in fit_length(t, bpm)]
        tracks, tag = [(qp, notes, 92)], f"p{qp}{semis:+d}_x{tf}"
        if i % 4 == 0:
            style = STYLES[(i // 4) % 4]; ap = ACC_PROGS[(i // 4) % 4]
            b, u = accompaniment(notes, dict(t, key=t['key'].transpose(semis)), style)
            tracks += [(ap, b, 70), (ap, u, 62)]; tag += f"_acc-{style}-p{ap}"
        q = f"{NEG}/{src}__q_{tag}.wav"
        jobs.append((write_midi(f"{MIDI}/neg_{src}_{tag}.mid", tracks, bpm * tf), q, SF_QUERY, 0.0, QUERY_S))
        rows.append((q, None, 'neg'))
    else:            # the other half also give a 10 s excerpt (calibrates short inputs like copy_excerpt)
        q = f"{NEG}/{src}__o8_10s.wav"
        excerpts.append((w, q, 8.0, 10.0)); rows.append((q, None, 'neg'))

# whole-track negatives: medleys of unrelated tunes, 2-4 minutes, each tune on a training instrument
# and tempo, 1 s apart
mrng = random.Random(SEED + 99)
mp = list(medley_pool); mrng.shuffle(mp)
k = 0
medleys = []
for m in range(10):
    target = 120 + 12 * m                       # 120 .. 228 s
    pm_tracks, t_s, names = [], 0.0, []
    while t_s < target and k < len(mp):
        t = mp[k]; k += 1
        prog, bpm = TRAIN_PROGS[(m + k) % 4], TRAIN_BPM[(m + 2 * k) % 4]
        notes = fit_length(t, bpm)
        sec = 60.0 / bpm
        if t_s + max(o + d for _, o, d in notes) * sec > 239.0:   # at most 4 minutes
            break
        pm_tracks.append((prog, [(p, t_s / sec + o, d) for p, o, d in notes], bpm))
        names.append(f"{t['name']}@{t_s:.0f}s")
        t_s += (max(o + d for _, o, d in notes)) * sec + 1.0
    if t_s < 120:
        break
    dst_mid = f"{MIDI}/medley{m + 1:02d}.mid"
    if not exists(dst_mid):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        for prog, notes, bpm in pm_tracks:
            sec = 60.0 / bpm
            ins = pretty_midi.Instrument(program=prog)
            ins.notes = [pretty_midi.Note(velocity=90, pitch=p, start=o * sec, end=(o + max(d, 0.06) * 0.985) * sec)
                         for p, o, d in notes]
            pm.instruments.append(ins)
        pm.write(dst_mid + '.tmp'); os.replace(dst_mid + '.tmp', dst_mid)
    w = f"{NEG}/medley{m + 1:02d}__full_{len(names)}tunes.wav"
    jobs.append((dst_mid, w, SF_TRAIN)); rows.append((w, None, 'neg'))
    medleys.append((f"medley{m + 1:02d}", names))

log(f"rendering {len(jobs)} files")
pmap(render, jobs)
pmap(cut, excerpts)

# labels
rows = [r for r in rows if exists(r[0])]
with open(f"{OUT}/truth.tsv.tmp", 'w') as f:
    for q, stem, cls in sorted(rows, key=lambda r: (r[2], r[0])):
        f.write(f"{os.path.relpath(q, OUT)}\t{stem or '-'}\t{cls}\n")
os.replace(f"{OUT}/truth.tsv.tmp", f"{OUT}/truth.tsv")
# remove files a previous build left that the labels no longer name
listed = {r[0] for r in rows}
for sub in ('query', 'neg'):
    for root, _, files in os.walk(os.path.join(OUT, sub)):
        for fn in files:
            if os.path.join(root, fn) not in listed:
                os.remove(os.path.join(root, fn))
tstems = {os.path.basename(r[0]).split('__')[0] for r in rows}
from collections import Counter
c = Counter(r[2] for r in rows)
log(f"train={len(os.listdir(TRAIN))} " + ' '.join(f"{k}={v}" for k, v in sorted(c.items())))
with open(f"{OUT}/tunes.tsv", 'w') as f:     # which corpus tune is where (for reading misses)
    for role, lst in (('train', train), ('neg', neg), ('medley', medley_pool)):
        for t in lst:
            f.write(f"{role}\t{t['name']}\t{t['title']}\t{t['key']}\t{len(t['notes'])} notes\n")
    for m, names in medleys:
        f.write(f"medley\t{m}\t{' '.join(names)}\n")
