import Foundation
import Preprocessing

/// Multislice propagation of a plane wave through slices of atoms (Kirkland's method): per slice
/// the projected potential from the atoms' scattering factors (atoms spread onto the grid with
/// bilinear weights, the weights' blur divided out in Fourier space), the transmission
/// exp(iσv), and the Fresnel propagator over the slice thickness, band-limited to 2/3 of the
/// Nyquist frequency against aliasing. Complex values interleaved (re, im), row-major.
public final class Multislice {
    public let n: Int
    /// Grid sampling in Å.
    public let sampling: Double
    public let volts: Double
    /// The wave's transform: the wave lives in its buffer from slice to slice.
    let fft: FFT2D
    /// The potential's real transform (a slice's potential is real: half the work).
    let potentialFFT: RealFFT2D
    let frequency2: [Double]  // q² per grid point (Å⁻²)
    let bandLimit: [Bool]
    let deblur: [Double]
    /// Per element: prefactor · f(q) / tent(q) inside the band limit, 0 outside, on the half
    /// spectrum (columns 0 … n/2) the real transform gives.
    var transfer: [Element: [Float]] = [:]
    /// exp(−iπλΔz q²) / n² inside the band limit (the inverse transform's normalisation folded
    /// in), per slice thickness.
    var propagators: [Double: [Float]] = [:]
    /// A slice's spectrum summed over its elements.
    var sum: [Float]

    public init(n: Int, sampling: Double, volts: Double = 300_000) {
        self.n = n; self.sampling = sampling; self.volts = volts
        fft = FFT2D(width: n, height: n)
        potentialFFT = RealFFT2D(width: n, height: n)
        sum = [Float](repeating: 0, count: 2 * n * (n / 2 + 1))
        var f2 = [Double](repeating: 0, count: n * n), band = [Bool](repeating: false, count: n * n)
        var blur = [Double](repeating: 1, count: n * n)
        let qmax = 2.0 / 3 / (2 * sampling)
        for y in 0..<n { for x in 0..<n {
            let fx = Double(x <= n / 2 ? x : x - n) / (Double(n) * sampling), fy = Double(y <= n / 2 ? y : y - n) / (Double(n) * sampling)
            f2[y * n + x] = fx * fx + fy * fy
            band[y * n + x] = fx * fx + fy * fy <= qmax * qmax
            func sinc(_ t: Double) -> Double { t == 0 ? 1 : sin(Double.pi * t) / (Double.pi * t) }
            let s = sinc(fx * sampling) * sinc(fy * sampling)
            blur[y * n + x] = 1 / max(s * s, 0.05)  // the bilinear tent's transfer, divided out
        } }
        frequency2 = f2; bandLimit = band; deblur = blur
    }

    public var wavelength: Double { Beam.wavelength(volts: volts) }

    /// The projected potential (V·Å) of `atoms` (positions x, y in Å inside the periodic field).
    public func projectedPotential(_ atoms: [(Element, SIMD2<Double>)]) -> [Float] {
        let scale = potentialIntoBuffer(atoms)
        return (0..<(n * n)).map { potentialFFT.real[$0] * scale }
    }

    /// The potential of `atoms` into `potentialFFT.real`, unscaled; returns the factor that
    /// makes it V·Å. Per element the atoms are spread onto the grid (bilinear), transformed,
    /// multiplied by the element's transfer function and summed; one inverse transform.
    func potentialIntoBuffer(_ atoms: [(Element, SIMD2<Double>)]) -> Float {
        let byElement = Dictionary(grouping: atoms, by: \.0).sorted { $0.key.rawValue < $1.key.rawValue }
        let half = n / 2 + 1, count = 2 * n * half
        let real = potentialFFT.real, spectrum = potentialFFT.spectrum
        for (k, (element, list)) in byElement.enumerated() {
            real.update(repeating: 0, count: n * n)
            for (_, p) in list {
                let gx = p.x / sampling, gy = p.y / sampling
                let x0 = Int(gx.rounded(.down)), y0 = Int(gy.rounded(.down))
                let fx = Float(gx - Double(x0)), fy = Float(gy - Double(y0))
                let xa = wrap(x0), xb = wrap(x0 + 1), ya = wrap(y0), yb = wrap(y0 + 1)
                real[ya * n + xa] += (1 - fx) * (1 - fy); real[ya * n + xb] += fx * (1 - fy)
                real[yb * n + xa] += (1 - fx) * fy; real[yb * n + xb] += fx * fy
            }
            potentialFFT.forward()
            let w = transferFunction(element)
            sum.withUnsafeMutableBufferPointer { acc in
                for i in 0..<(count / 2) {
                    let re = spectrum[2 * i] * w[i], im = spectrum[2 * i + 1] * w[i]
                    if k == 0 { acc[2 * i] = re; acc[2 * i + 1] = im } else { acc[2 * i] += re; acc[2 * i + 1] += im }
                }
            }
        }
        if byElement.isEmpty { sum.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
        sum.withUnsafeBufferPointer { spectrum.update(from: $0.baseAddress!, count: count) }
        potentialFFT.inverse()
        return Float(1 / (Double(n * n) * sampling * sampling))
    }

    func wrap(_ i: Int) -> Int { ((i % n) + n) % n }

    func transferFunction(_ element: Element) -> [Float] {
        if let t = transfer[element] { return t }
        let half = n / 2 + 1
        var t = [Float](repeating: 0, count: n * half)
        for y in 0..<n { for x in 0..<half where bandLimit[y * n + x] {
            t[y * half + x] = Float(Beam.potentialPrefactor * element.scatteringFactor(g2: frequency2[y * n + x]) * deblur[y * n + x])
        } }
        transfer[element] = t
        return t
    }

    func propagator(_ thickness: Double) -> [Float] {
        if let p = propagators[thickness] { return p }
        var p = [Float](repeating: 0, count: 2 * n * n)
        let lambda = wavelength, norm = 1 / Double(n * n)
        for i in 0..<(n * n) where bandLimit[i] {
            let chi = -Double.pi * lambda * thickness * frequency2[i]
            p[2 * i] = Float(cos(chi) * norm); p[2 * i + 1] = Float(sin(chi) * norm)
        }
        propagators[thickness] = p
        return p
    }

    /// Passes `wave` through one slice of potential `v` (V·Å) and `thickness` Å of free space.
    public func transmitAndPropagate(_ wave: inout [Float], potential v: [Float], thickness: Double) {
        let w = fft.values
        wave.withUnsafeBufferPointer { w.update(from: $0.baseAddress!, count: 2 * n * n) }
        v.withUnsafeBufferPointer { transmit(by: $0.baseAddress!, scale: 1) }
        propagate(thickness)
        wave = Array(UnsafeBufferPointer(start: w, count: 2 * n * n))
    }

    /// The exit wave of a plane wave through `slices` (the atoms of each, top first), each
    /// `thickness` Å thick: per slice its potential (`potentialIntoBuffer`), the transmission
    /// exp(iσv) and the propagation, all in the transforms' own buffers. `lap(name)` is called
    /// after each part of each slice (for the timings).
    public func exitWave(_ slices: [[(Element, SIMD2<Double>)]], thickness: Double, lap: (String) -> Void = { _ in }) -> [Float] {
        let w = fft.values
        for i in 0..<(n * n) { w[2 * i] = 1; w[2 * i + 1] = 0 }
        for atoms in slices {
            if !atoms.isEmpty {
                let scale = potentialIntoBuffer(atoms)
                lap("potential")
                transmit(by: UnsafePointer(potentialFFT.real), scale: scale)
            }
            propagate(thickness)
            lap("multislice")
        }
        return Array(UnsafeBufferPointer(start: w, count: 2 * n * n))
    }

    /// The wave in `fft.values` times exp(iσ · scale · v).
    func transmit(by v: UnsafePointer<Float>, scale: Float) {
        let sigma = Float(Beam.interaction(volts: volts)) * scale
        let w = fft.values, count = n * n
        var i = 0
        while i + 8 <= count {
            let (s, c) = sinCos(sigma * UnsafeRawPointer(v + i).loadUnaligned(as: SIMD8<Float>.self))
            // Eight complex values: (re, im) pairs in two vectors of eight floats.
            let p = UnsafeMutableRawPointer(w + 2 * i)
            let a = p.loadUnaligned(as: SIMD16<Float>.self)
            let re = a.evenHalf, im = a.oddHalf
            let newRe = re * c - im * s, newIm = re * s + im * c
            var out = SIMD16<Float>()
            out.evenHalf = newRe; out.oddHalf = newIm
            p.storeBytes(of: out, as: SIMD16<Float>.self)
            i += 8
        }
        while i < count {
            let phase = sigma * v[i], c = cos(phase), s = sin(phase), re = w[2 * i], im = w[2 * i + 1]
            w[2 * i] = re * c - im * s; w[2 * i + 1] = re * s + im * c
            i += 1
        }
    }

    /// The wave in `fft.values` propagated over `thickness` Å (band-limited).
    func propagate(_ thickness: Double) {
        let w = fft.values
        fft.forwardInPlace()
        propagator(thickness).withUnsafeBufferPointer { prop in
            for i in 0..<(n * n) {
                let c = prop[2 * i], s = prop[2 * i + 1], re = w[2 * i], im = w[2 * i + 1]
                w[2 * i] = re * c - im * s; w[2 * i + 1] = re * s + im * c
            }
        }
        fft.inverseInPlace()
    }

    /// A plane wave of unit amplitude.
    public var planeWave: [Float] { (0..<(2 * n * n)).map { $0 % 2 == 0 ? 1 : 0 } }

    /// The wave's spectrum (for the lens).
    public func spectrum(_ wave: [Float]) -> [Float] { fft.forward(complex: wave) }
    public func image(_ spectrum: [Float]) -> [Float] {
        let w = fft.inverseNormalised(spectrum)
        return (0..<(n * n)).map { w[2 * $0] * w[2 * $0] + w[2 * $0 + 1] * w[2 * $0 + 1] }
    }
    public func frequencySquared(_ i: Int) -> Double { frequency2[i] }
    public func realSpectrum(_ values: [Float]) -> [Float] { fft.forward(real: values) }
    public func realPart(_ spectrum: [Float]) -> [Float] { let v = fft.inverseNormalised(spectrum); return (0..<(n * n)).map { v[2 * $0] } }
}
