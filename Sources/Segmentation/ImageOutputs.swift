import Foundation
import MicrographIO
import NanoTensor
import ParticleAnalysis
import Preprocessing

/// The files `segment` writes for one image, each atomically (temporary file, then rename):
/// `<name>_mask.png` (0/255), `<name>_mask.tif`, `<name>_labels.tif` (uint16 particle ids, both
/// TIFFs deflated, see `TIFFWriter`; past 65535 particles float32 labels, not deflated),
/// `<name>_prob.tif` (float32) or `<name>_prob.npy`, `<name>_overlay.png` and, last, as the mark
/// that the image is done, `<name>_particles.csv` and `<name>.summary.json`. The TIFFs carry an
/// ImageJ calibration in nm so Fiji shows the scale.
public enum ImageOutputs {
    /// How the probability map is kept: float32 TIFF, NumPy, or not at all (`none`: a 4096²
    /// map is 64 MB, for batches that need only the masks, labels and tables).
    public enum ProbabilityFormat: String, Sendable, CaseIterable { case tif, npy, none }

    public static func files(for name: String, probability: ProbabilityFormat) -> [String] {
        let map = probability == .none ? [] : ["\(name)_prob.\(probability.rawValue)"]
        return ["\(name)_mask.png", "\(name)_mask.tif", "\(name)_labels.tif"] + map
            + ["\(name)_overlay.png", "\(name)_particles.csv", "\(name).summary.json"]
    }

    /// A file to write and how.
    typealias Job = (key: String, file: URL, write: () throws -> Void)

    /// Writes every output of one image, measuring its particles meanwhile, and returns the
    /// measurement and the summary with the seconds each step took. The probability map, the
    /// largest file and (written directly, see `writeAtomically`) mostly a wait on the device,
    /// is written on a thread of its own. Two threads share one queue of the other work: it
    /// starts with the maps that do not depend on the particles (mask PNG and TIFF, the
    /// overlay's background); this thread measures (`measure`) meanwhile, and what `measure`
    /// runs through the `ParallelFor` it is given (the split of touching particles, the
    /// measuring's two pieces) goes to the head of the queue, so the other thread joins in as
    /// soon as its write is done (this one takes no write until it has measured). Once the
    /// labels are final (`measure` calls the function it is given, before the particles are
    /// measured, at most once and on the thread it runs on, with the labels it returns; or, if
    /// it does not, once it returns) the label image and the overlay's outlines are queued, and
    /// the other thread takes them between the measuring's pieces; then this thread adds the overlay's ids and its
    /// write, and both take whatever is next until none is left. The particle table and the
    /// summary (`summarise` of the measurement, the timings and the mask's particle pixels,
    /// counted as its bytes were made), the marks that the image is done, come last. On any
    /// failure every file written for the image is removed.
    public static func write(name: String, into dir: URL, raw: FloatImage, result: SegmentedImage, probability: ProbabilityFormat,
                             measure: (ParallelFor, (ComponentLabels) -> Void) -> ParticleMeasurement,
                             summarise: (ParticleMeasurement, [String: Double], _ maskPixels: Int) -> ImageSummary) throws
        -> (ParticleMeasurement, ImageSummary) {
        @Sendable func url(_ suffix: String) -> URL { dir.appendingPathComponent(name + suffix) }
        // An image redone (an earlier run's summary is there) in another map format, or with
        // none: the earlier run's map goes, so no map of another model or setting stays beside
        // the new mask.
        if FileManager.default.fileExists(atPath: url(".summary.json").path) {
            for other in ProbabilityFormat.allCases where other != .none && other != probability { removeOutputFile(url("_prob.\(other.rawValue)")) }
        }
        let background = Shared { Overlay.background(raw) }, mask255 = Shared { result.mask.bytes255Counted }
        let maps = mapJobs(name: name, into: dir, result: result, mask255: mask255, overlayBackground: background)
        let probabilityMap = probabilityJob(name: name, into: dir, result: result, format: probability)
        let mapFiles = maps.map(\.file) + (probabilityMap.map { [$0.file] } ?? [])
        // The probability map (64 MB for 4096²) is mostly a wait on the device (a direct write,
        // see `writeAtomically`): it goes on a thread of its own, so that the other two keep
        // computing meanwhile. (Where the file system takes no direct writes it is a third thread
        // copying into the page cache beside them.)
        let outcome = Outcome(), queue = JobQueue(maps)
        let probabilityWrite = probabilityMap.map { job in
            let handed = HandedOver(job)  // to that thread alone
            return ThreadPool.detached { JobQueue.perform(handed.value, outcome) }
        }
        final class Measured: @unchecked Sendable {
            var value: ParticleMeasurement?
            var seconds = 0.0
            /// The label image's write (or why there is none), and the overlay with outlines.
            var labelJobs: Result<[Job], Error>?
            var outlined: Shared<IndexedCanvas>?
        }
        let measured = Measured()
        withoutActuallyEscaping(measure) { measure in
            let task = HandedOver(measure)  // to the side-by-side job that measures
            // Two jobs side by side (the caller's thread takes one): no wait on a queue that
            // `segment --jobs N` may have filled with callers like this one.
            ThreadPool.sideBySide(2) { k in
                if k == 0 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    func labelled(_ labels: ComponentLabels) {
                        guard measured.labelJobs == nil else { return }
                        let outlined = Shared { () -> IndexedCanvas in
                            var canvas = background.take()  // the outlines are its only user
                            Overlay.outline(on: &canvas, of: raw, labels: labels)
                            return canvas
                        }
                        measured.outlined = outlined
                        measured.labelJobs = Result { try ImageOutputs.labelJobs(name: name, into: dir, labels: labels, pixelSizeNm: result.pixelSizeNm) }
                        if case .success(let jobs) = measured.labelJobs {
                            // The outlines first: the overlay's write after the measures waits for them.
                            queue.add([("overlay_outlines", url("_overlay.png"), { _ = outlined.value })] + jobs)
                        }
                    }
                    let measurement = task.value({ count, piece in queue.parallel(count, piece, outcome: outcome) }, labelled)
                    labelled(measurement.labels)  // where `measure` did not say
                    measured.value = measurement
                    measured.seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    guard case .success = measured.labelJobs, let outlined = measured.outlined else { queue.close(adding: []); return }
                    queue.close(adding: [("write_overlay", url("_overlay.png"), {
                        var canvas = outlined.take()  // the ids' write is its only user
                        Overlay.number(on: &canvas, of: raw, particles: measurement.particles)
                        try canvas.write(to: url("_overlay.png"))
                    })])
                }
                queue.run(into: outcome)
            }
        }
        probabilityWrite?.wait()
        let measurement = measured.value!
        let labelJobs: [Job]
        do {
            labelJobs = try measured.labelJobs!.get()
        } catch {
            for f in mapFiles { removeOutputFile(f) }
            throw error
        }
        let written = mapFiles + labelJobs.map(\.file) + [url("_overlay.png")]
        do {
            if let error = outcome.error { throw error }
            var seconds = outcome.seconds
            seconds["particles"] = measured.seconds
            let start = DispatchTime.now().uptimeNanoseconds
            let csv = ([Particle.csvHeader.joined(separator: ",")] + measurement.particles.map { $0.csvFields.joined(separator: ",") })
                .joined(separator: "\n") + "\n"
            try writeAtomically(Array(csv.utf8), to: url("_particles.csv"))
            seconds["write_tables"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let summary = summarise(measurement, seconds, mask255.value.particlePixels)
            try writeAtomically(Array(try encoder.encode(summary)), to: url(".summary.json"))
            return (measurement, summary)
        } catch {
            for f in written + [url("_particles.csv"), url(".summary.json")] { removeOutputFile(f) }
            throw error
        }
    }

    /// Removes an output after a failure, if it is a file (or a link): a folder of that name is
    /// the user's, never removed.
    public static func removeOutputFile(_ url: URL) {
        guard let type = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.type] as? FileAttributeType,
              type == .typeRegular || type == .typeSymbolicLink else { return }
        try? FileManager.default.removeItem(at: url)
    }

    /// The probability map's write, unless `none`.
    static func probabilityJob(name: String, into dir: URL, result: SegmentedImage, format: ProbabilityFormat) -> Job? {
        let w = result.mask.width, h = result.mask.height
        let file = dir.appendingPathComponent("\(name)_prob.\(format.rawValue)")
        switch format {
        // Shown from 0 to 1 in Fiji, the same for every image (and no pass to find its range).
        case .tif:
            return ("write_prob", file, {
                try TIFFWriter.writeFloat32(result.probability.pixels, width: w, height: h, pixelSizeNM: result.pixelSizeNm,
                                            displayRange: (0, 1), to: file)
            })
        case .npy: return ("write_prob", file, { try NPYFile.write(result.probability.pixels, shape: [h, w], to: file) })
        case .none: return nil
        }
    }

    /// The mask (PNG and TIFF), and the overlay's background (`Overlay.background`, made here
    /// unless the outlines' job comes first). `mask255`: the mask's 0/255 bytes and its particle
    /// pixels, made by whichever mask write comes first.
    static func mapJobs(name: String, into dir: URL, result: SegmentedImage,
                        mask255: Shared<(bytes: [UInt8], particlePixels: Int)>, overlayBackground: Shared<IndexedCanvas>) -> [Job] {
        let w = result.mask.width, h = result.mask.height
        let pixelSize = result.pixelSizeNm.map { PixelSize(isotropic: $0) }
        func url(_ suffix: String) -> URL { dir.appendingPathComponent(name + suffix) }
        return [
            ("write_mask_png", url("_mask.png"), { try PNGWriter.writeGrey8(mask255.value.bytes, width: w, height: h, to: url("_mask.png")) }),
            ("write_mask_tif", url("_mask.tif"), {
                try TIFFWriter.write(Micrograph(width: w, height: h, pixelType: .uint8, data: mask255.value.bytes, pixelSize: pixelSize, format: "tiff"),
                                     to: url("_mask.tif"), deflated: true)
            }),
            ("overlay_background", url("_overlay.png"), { _ = overlayBackground.value }),
        ]
    }

    /// The particle labels: a uint16 TIFF, or float32 (ids exact up to 2²⁴, as Fiji opens it)
    /// for an image of more than 65535 particles.
    static func labelJobs(name: String, into dir: URL, labels: ComponentLabels, pixelSizeNm: Double?) throws -> [Job] {
        let w = labels.width, h = labels.height
        func url(_ suffix: String) -> URL { dir.appendingPathComponent(name + suffix) }
        let pixelSize = pixelSizeNm.map { PixelSize(isotropic: $0) }
        if labels.count > Int(UInt16.max) {
            guard labels.count < 1 << 24 else {
                throw MicrographError(url: url("_labels.tif"), reason: "\(labels.count) particles: more than a label image can number")
            }
            return [
                ("write_labels_tif", url("_labels.tif"), {
                    try TIFFWriter.writeFloat32(labels.labels.map(Float.init), width: w, height: h,
                                                pixelSizeNM: pixelSizeNm, to: url("_labels.tif"))
                }),
            ]
        }
        return [
            ("write_labels_tif", url("_labels.tif"), {
                try labels.labels.withUnsafeBufferPointer { labels in
                    precondition(labels.count == w * h)
                    try TIFFWriter.writeDeflatedUInt16(width: w, height: h, pixelSize: pixelSize, to: url("_labels.tif")) { y0, y1, to in
                        let from = labels.baseAddress! + y0 * w
                        for i in 0..<((y1 - y0) * w) {  // ids fit: at most 65535 particles, checked above (a vectorised loop)
                            to[i] = UInt16(truncatingIfNeeded: from[i]).littleEndian
                        }
                    }
                }
            }),
        ]
    }

    /// A value made once, by whichever job asks for it first (off the thread that queues them).
    final class Shared<Value>: @unchecked Sendable {
        private let lock = NSLock(), make: () -> Value
        private var made: Value?
        init(_ make: @escaping () -> Value) { self.make = make }
        var value: Value {
            lock.lock(); defer { lock.unlock() }
            if made == nil { made = make() }
            return made!
        }
        /// The value for its one consumer, who changes it: handed over, not copied (made here if
        /// it was not yet; a later `value` would make it again).
        func take() -> Value {
            lock.lock(); defer { lock.unlock() }
            let v = made ?? make()
            made = nil
            return v
        }
    }

    /// A value given to another thread, which alone uses it from then on.
    final class HandedOver<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    final class Outcome: @unchecked Sendable {
        let lock = NSLock()
        var seconds: [String: Double] = [:]
        var error: Error?
    }

    /// Writes in the order they are to be taken (more may come until `close(adding:)`), and the
    /// pieces of a `parallel` loop, taken before any write.
    final class JobQueue: @unchecked Sendable {
        private let condition = NSCondition()
        private var jobs: [Job], next = 0, closed = false
        /// The running loop's body (a pointer to the caller's stack slot, so that no thread holds
        /// a reference to the closure once its piece is done), its pieces and those not finished.
        private var pieceBody: UnsafePointer<(Int) -> Void>?, pieceCount = 0, nextPiece = 0, unfinishedPieces = 0
        init(_ jobs: [Job]) { self.jobs = jobs }

        enum Work { case write(Job), piece(UnsafePointer<(Int) -> Void>, Int) }

        /// Adds jobs after those queued (the queue stays open).
        func add(_ more: [Job]) {
            condition.lock(); jobs += more; condition.broadcast(); condition.unlock()
        }

        /// Adds the last jobs; takers then stop once the queue is empty.
        func close(adding more: [Job]) {
            condition.lock(); jobs += more; closed = true; condition.broadcast(); condition.unlock()
        }

        /// The next piece (under the lock), nil when there is none now.
        private func nextPieceWork() -> Work? {
            guard nextPiece < pieceCount, let body = pieceBody else { return nil }
            nextPiece += 1
            return .piece(body, nextPiece - 1)
        }

        /// The next piece or write (under the lock), nil when there is none now.
        private func nextWork() -> Work? {
            if let piece = nextPieceWork() { return piece }
            if next < jobs.count { next += 1; return .write(jobs[next - 1]) }
            return nil
        }

        /// Takes and runs pieces and writes until none is left and the queue is closed.
        func run(into outcome: Outcome) {
            while true {
                condition.lock()
                var work = nextWork()
                while work == nil && !closed { condition.wait(); work = nextWork() }
                condition.unlock()
                guard let work else { return }
                perform(work, outcome)
            }
        }

        /// Runs `piece(0 ..< count)` (a `ParallelFor`): the pieces go before every write, the
        /// other thread takes them as it comes back to the queue, and this one takes pieces only
        /// (what waits on them, the split or the measuring, is what the labels, the outlines and
        /// the overlay's ids wait on) until every piece has finished. One loop at a time.
        func parallel(_ count: Int, _ piece: (Int) -> Void, outcome: Outcome) {
            guard count > 0 else { return }
            withoutActuallyEscaping(piece) { escapable in
                withUnsafePointer(to: escapable) { body in
                    condition.lock()
                    pieceBody = body; pieceCount = count; nextPiece = 0; unfinishedPieces = count
                    condition.broadcast()
                    while unfinishedPieces > 0 {
                        if let work = nextPieceWork() {
                            condition.unlock(); perform(work, outcome); condition.lock()
                        } else {
                            condition.wait()
                        }
                    }
                    pieceBody = nil; pieceCount = 0; nextPiece = 0
                    condition.unlock()
                }
            }
        }

        /// Runs a piece (and counts it finished) or a write (recording its seconds and the first error).
        private func perform(_ work: Work, _ outcome: Outcome) {
            switch work {
            case .piece(let body, let k):
                body.pointee(k)
                condition.lock(); unfinishedPieces -= 1; condition.broadcast(); condition.unlock()
            case .write(let job):
                JobQueue.perform(job, outcome)
            }
        }

        /// Runs a write, recording its seconds and the first error.
        static func perform(_ job: Job, _ outcome: Outcome) {
            let start = DispatchTime.now().uptimeNanoseconds
            do { try job.write() } catch { outcome.lock.lock(); outcome.error = outcome.error ?? error; outcome.lock.unlock() }
            outcome.lock.lock()
            outcome.seconds[job.key] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            outcome.lock.unlock()
        }
    }
}

/// The micrograph, contrast-stretched (0.5–99.5 %), with particle outlines and ids; at most
/// 2048² px (larger images are shown shrunk by a whole step, so a wide panorama, 9000 × 400 px
/// say, is shown whole rather than 2048 px wide). Drawn in 254 grey levels and two
/// colours on an `IndexedCanvas` (a palette PNG): a third of an RGB image's bytes to code and
/// write (with zlib, once: 3.7 MB in 39 ms instead of 6.1 MB in 126 ms as RGB). Its rows are
/// coded as literals in a code fitted to them (`RunDeflater.literals`): a simulated 4096²
/// micrograph's overlay 3.05 MB against 2.93 MB with zlib's run-length deflate, and the bench's
/// overlay written in 25.7–27.1 ms against 40.6–41.2 ms (Intel Xeon fam 6 mod 207,
/// `segment_4096`'s breakdown).
public enum Overlay {
    /// The most pixels an overlay shows (2048²).
    public static let maxPixels = 2048 * 2048
    /// Palette: grey levels 0 … 253 (index i shows 255 · i / 253), then the outline and the ids.
    public static let greyLevels = 254
    public static let outline: UInt8 = 254, label: UInt8 = 255
    public static let palette: [Canvas.Colour] = (0..<greyLevels).map { i -> Canvas.Colour in
        let g = UInt8((Double(i) * 255 / Double(greyLevels - 1)).rounded()); return (g, g, g)
    } + [(255, 40, 40), (255, 230, 0)]

    public static func render(_ raw: FloatImage, labels: ComponentLabels, particles: [Particle]) -> IndexedCanvas {
        var c = background(raw)
        draw(on: &c, of: raw, labels: labels, particles: particles)
        return c
    }

    /// Every `step`-th pixel of the image: the smallest step that shows at most `maxPixels`.
    static func step(_ raw: FloatImage) -> Int { step(width: raw.width, height: raw.height) }

    public static func step(width w: Int, height h: Int) -> Int {
        var step = max(1, Int((Double(w) * Double(h) / Double(maxPixels)).squareRoot()))
        while ((w + step - 1) / step) * ((h + step - 1) / step) > maxPixels { step += 1 }
        return step
    }

    /// The contrast-stretched micrograph the outlines are drawn on (it needs no particles, so
    /// `segment` makes it while they are measured).
    public static func background(_ raw: FloatImage) -> IndexedCanvas {
        let w = raw.width, h = raw.height, step = step(raw)
        let ow = (w + step - 1) / step, oh = (h + step - 1) / step
        // Contrast limits from the pixels shown (every step-th; at step 1 the image itself).
        let shown = step == 1 ? raw.pixels : [Float](unsafeUninitializedCapacity: ow * oh) { out, count in
            raw.pixels.withUnsafeBufferPointer { src in
                for oy in 0..<oh {
                    let row = src.baseAddress! + oy * step * w, line = out.baseAddress! + oy * ow
                    for ox in 0..<ow { line[ox] = row[ox * step] }
                }
            }
            count = ow * oh
        }
        let q = percentiles(shown, [0.5, 99.5])
        let lo = q[0], span = max(q[1] - q[0], 1e-12)
        var c = IndexedCanvas(width: ow, height: oh, palette: palette)
        let top = Float(greyLevels - 1), k = top / span
        shown.withUnsafeBufferPointer { v in
            c.indices.withUnsafeMutableBufferPointer { out in
                // (v − lo)·k rounded half away from zero, as `rounded()` does, then clamped to
                // the grey levels: for x ≥ 0 that is trunc(x) + 1 where x − trunc(x) ≥ ½ (x minus
                // its integer part is exact), and anything below 0 ends at 0 either way. The
                // level, a whole number in 0 ... 255, is the low byte of level + 2²³'s bits.
                // Written so that it runs 16 pixels at a time (no conversion to check).
                for i in 0..<out.count {
                    let x = (v[i] - lo) * k, whole = x.rounded(.towardZero)
                    let level = max(0, min(top, x - whole >= 0.5 ? whole + 1 : whole))
                    out[i] = UInt8(truncatingIfNeeded: (level + 8_388_608).bitPattern)
                }
            }
        }
        return c
    }

    /// The particles' outlines (a shown pixel of a particle with a neighbour `step` away outside
    /// it or beyond the image) and ids, on the `background` of `raw`.
    public static func draw(on c: inout IndexedCanvas, of raw: FloatImage, labels: ComponentLabels, particles: [Particle]) {
        outline(on: &c, of: raw, labels: labels)
        number(on: &c, of: raw, particles: particles)
    }

    /// The particles' outlines alone (they need the labels only, not the measures).
    static func outline(on c: inout IndexedCanvas, of raw: FloatImage, labels: ComponentLabels) {
        let w = raw.width, h = raw.height, step = step(raw)
        let ow = c.width, oh = c.height
        // On the shown grid (every step-th pixel): a shown pixel of a particle whose neighbour
        // `step` away, across or down, is outside it, or which is within `step` of an edge. The
        // grid's rows are sampled into three rolling buffers, so each row's test is a plain
        // loop over whole rows that runs 16 pixels at a time.
        let rows = (0..<3).map { _ in UnsafeMutablePointer<Int32>.allocate(capacity: ow) }
        defer { for r in rows { r.deallocate() } }
        labels.labels.withUnsafeBufferPointer { L in
            c.indices.withUnsafeMutableBufferPointer { out in
                let base = L.baseAddress!
                func sample(_ oy: Int, into row: UnsafeMutablePointer<Int32>) {
                    let src = base + oy * step * w
                    for ox in 0..<ow { row[ox] = src[ox * step] }
                }
                // Columns ox with x = ox·step at least step from the left and right edges.
                let inner = 1..<max(1, min(ow, (w - 1) / step))
                var (up, mid, down) = (rows[0], rows[1], rows[2])
                sample(0, into: mid)
                if oh > 1 { sample(1, into: down) }
                for oy in 0..<oh {
                    let y = oy * step, line = out.baseAddress! + oy * ow
                    if y < step || y + step >= h {
                        for ox in 0..<ow where mid[ox] != 0 { line[ox] = outline }
                    } else {
                        for ox in 0..<min(ow, inner.lowerBound) where mid[ox] != 0 { line[ox] = outline }  // the edge columns
                        for ox in inner.upperBound..<ow where mid[ox] != 0 { line[ox] = outline }
                        for ox in inner {
                            let l = mid[ox]
                            let edge = l != 0 && (mid[ox - 1] != l || mid[ox + 1] != l || up[ox] != l || down[ox] != l)
                            line[ox] = edge ? outline : line[ox]
                        }
                    }
                    (up, mid, down) = (mid, down, up)
                    if oy + 2 < oh { sample(oy + 2, into: down) }
                }
            }
        }
    }

    /// Each particle's id at its centroid.
    static func number(on c: inout IndexedCanvas, of raw: FloatImage, particles: [Particle]) {
        // Twice the glyphs' size at most: the overlay of a large image is shrunk, its particles
        // with it, and larger ids would cover them (a 4 × id hid most of a 36 px particle).
        let step = step(raw), scale = max(1, min(2, min(c.width, c.height) / 300))
        for p in particles {
            let text = String(p.id)
            let x = Int(p.centroidX) / step - Canvas.textWidth(text, scale: scale) / 2, y = Int(p.centroidY) / step - 3 * scale
            c.fill(x0: x - 1, y0: y - 1, x1: x + Canvas.textWidth(text, scale: scale), y1: y + 8 * scale, 0)
            c.text(text, x: x, y: y, label, scale: scale)
        }
    }
}
