import ArgumentParser
import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import Preprocessing
import Segmentation

struct Activations: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write what each layer of the network sees: a PNG grid of its activation maps.",
        discussion: """
            Prepares IMAGE as the model records (resampled to the model's pixel size when both are \
            known), runs the network in inference mode and writes OUTDIR/NN_<layer>.png for every \
            convolution and batch norm: one tile per channel, each stretched to its own range (the \
            paper's Figure 6: early layers separate particle from background, later ones respond \
            to atomic columns). The image is cropped to a multiple of the network's alignment, at \
            most 1024 px a side.

            Example: nanofind activations image.mrc -o activations
            """)

    @Argument(help: "A micrograph.") var image: String
    @OptionGroup var output: OutputFolderOption
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var calibration: PixelSizeOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        threads.apply()
        let model = try modelOptions.load(forSegmenting: false)  // any one-channel network can be shown
        let out = try output.prepare()
        let pixelSize = calibration.pixelSize
        do {
            let url = URL(fileURLWithPath: image)
            guard let m = try IsolatedReader.open(url).first else { throw MicrographError(url: url, reason: "holds no image") }
            guard m.width >= 64, m.height >= 64 else {
                throw MicrographError(url: url, reason: "image is \(m.width)×\(m.height) pixels; both sides must be at least 64")
            }
            var raw = try FloatImage(m)
            // NaN and infinite pixels filled as segment fills them (they would spread through every
            // layer's map), and said.
            if let nonFinite = raw.nonFinitePixels().mask {
                guard nonFinite.foregroundCount < raw.count else { throw MicrographError(url: url, reason: "every pixel is NaN or infinite") }
                _ = raw.fillLikeOthers(nonFinite)
                writeStandardError("warning: \(oneLine(url.path)): \(nonFinite.foregroundCount) pixels are NaN or infinite: filled with pixels drawn from the others\n")
            }
            let a = model.network.plan.alignment
            if let p = try pixelSize ?? m.squarePixelSizeNm(file: image), let t = model.metadata.trainingPixelSizeNm, abs(p / t - 1) > 0.02 {
                // The part of the image that becomes at most 1024² at the model's scale, cut before
                // resampling (a far finer model scale would otherwise blow the whole image up).
                let scale = p / t
                let cw = min(raw.width, max(1, Int((1024 / scale).rounded(.up)))), ch = min(raw.height, max(1, Int((1024 / scale).rounded(.up))))
                var cut = FloatImage(width: cw, height: ch)
                for y in 0..<ch { for xx in 0..<cw { cut[x: xx, y: y] = raw[x: xx, y: y] } }
                guard Double(cw) * scale <= 4096, Double(ch) * scale <= 4096 else {
                    throw MicrographError(url: url, reason: String(format: "at the model's pixel size (%.4g nm, this image %.4g nm) one pixel of this image would be %.3g pixels",
                                                                   t, p, scale))
                }
                let rw = Int((Double(cw) * scale).rounded()), rh = Int((Double(ch) * scale).rounded())
                guard rw >= a, rh >= a else {
                    throw MicrographError(url: url, reason: String(format: "at the model's pixel size (%.4g nm, this image %.4g nm) the image is %d×%d pixels, smaller than the network's %d",
                                                                   t, p, rw, rh, a))
                }
                raw = resample(cut, width: rw, height: rh)
            }
            let prepared = (modelOptions.preprocess.recipe ?? model.metadata.preprocessing).apply(raw)
            // At most 1024² (or one alignment, for a network deeper than that), cut to whole
            // multiples of the alignment: an image smaller than one is refused, not run empty.
            let cap = max(a, 1024 / a * a)
            let w = min(cap, prepared.width / a * a), h = min(cap, prepared.height / a * a)
            guard w >= a, h >= a else {
                throw MicrographError(url: url, reason: "image is \(prepared.width)×\(prepared.height) pixels at the model's scale, smaller than the network's \(a) (its \(model.network.config.widths.count) levels need sides of at least \(a))")
            }
            let x = Tensor(Shape(1, 1, h, w))
            for y in 0..<h { for xx in 0..<w { x[0, 0, y, xx] = prepared.pixels[y * prepared.width + xx] } }
            var index = 0
            var failure: Error?
            _ = model.network.forward(Variable(x), tape: Tape(), training: false) { name, t in
                guard failure == nil else { return }
                index += 1
                do { try activationGrid(t).write(to: out.appendingPathComponent(String(format: "%02d_%@.png", index, name))) } catch { failure = error }
            }
            if let failure { throw failure }
            print("\(index) layers -> \(out.path)/")
        } catch {
            throw exitWithInputError(error)
        }
    }
}

/// The channels of one image's activation (1, c, h, w) side by side in a near-square grid, each
/// stretched from its own minimum (black) to maximum (white), tiles at most 256 px.
func activationGrid(_ t: Tensor) -> Canvas {
    let s = t.shape
    let step = max(1, max(s.h, s.w) / 256)
    let th = (s.h + step - 1) / step, tw = (s.w + step - 1) / step
    let columns = Int(Double(s.c).squareRoot().rounded(.up)), rows = (s.c + columns - 1) / columns
    var c = Canvas(width: columns * (tw + 2), height: rows * (th + 2), background: (40, 40, 40))
    for ch in 0..<s.c {
        let plane = UnsafeBufferPointer(start: t.plane(0, ch), count: s.plane)
        let lo = plane.min() ?? 0, hi = plane.max() ?? 1
        let ox = (ch % columns) * (tw + 2) + 1, oy = (ch / columns) * (th + 2) + 1
        for y in 0..<th { for x in 0..<tw {
            let v = hi > lo ? (plane[y * step * s.w + x * step] - lo) / (hi - lo) : 0
            let g = UInt8(max(0, min(255, v * 255)))
            c.set(ox + x, oy + y, (g, g, g))
        } }
    }
    return c
}
