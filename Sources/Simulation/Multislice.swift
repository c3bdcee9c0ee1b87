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
    let fft: FFT2D
    let frequency2: [Double]  // q² per grid point (Å⁻²)
    let bandLimit: [Bool]
    let deblur: [Double]
    /// Per element: prefactor · f(q) / tent(q) inside the band limit, 0 outside.
    var transfer: [Element: [Float]] = [:]
    /// exp(−iπλΔz q²) inside the band limit, per slice thickness.
    var propagators: [Double: [Float]] = [:]

    public init(n: Int, sampling: Double, volts: Double = 300_000) {
        self.n = n; self.sampling = sampling; self.volts = volts
        fft = FFT2D(width: n, height: n)
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
        var spectrum = [Float](repeating: 0, count: 2 * n * n)
        let byElement = Dictionary(grouping: atoms, by: \.0)
        for (element, list) in byElement {
            var density = [Float](repeating: 0, count: n * n)
            for (_, p) in list {
                let gx = p.x / sampling, gy = p.y / sampling
                let x0 = Int(gx.rounded(.down)), y0 = Int(gy.rounded(.down))
                let fx = Float(gx - Double(x0)), fy = Float(gy - Double(y0))
                let xa = wrap(x0), xb = wrap(x0 + 1), ya = wrap(y0), yb = wrap(y0 + 1)
                density[ya * n + xa] += (1 - fx) * (1 - fy); density[ya * n + xb] += fx * (1 - fy)
                density[yb * n + xa] += (1 - fx) * fy; density[yb * n + xb] += fx * fy
            }
            let d = fft.forward(real: density)
            let w = transferFunction(element)
            for i in 0..<(n * n) {
                spectrum[2 * i] += d[2 * i] * w[i]; spectrum[2 * i + 1] += d[2 * i + 1] * w[i]
            }
        }
        let v = fft.inverse(spectrum)
        let scale = Float(1 / (Double(n * n) * sampling * sampling))
        return (0..<(n * n)).map { v[2 * $0] * scale }
    }

    func wrap(_ i: Int) -> Int { ((i % n) + n) % n }

    func transferFunction(_ element: Element) -> [Float] {
        if let t = transfer[element] { return t }
        var t = [Float](repeating: 0, count: n * n)
        for i in 0..<(n * n) where bandLimit[i] {
            t[i] = Float(Beam.potentialPrefactor * element.scatteringFactor(g2: frequency2[i]) * deblur[i])
        }
        transfer[element] = t
        return t
    }

    func propagator(_ thickness: Double) -> [Float] {
        if let p = propagators[thickness] { return p }
        var p = [Float](repeating: 0, count: 2 * n * n)
        let lambda = wavelength
        for i in 0..<(n * n) where bandLimit[i] {
            let chi = -Double.pi * lambda * thickness * frequency2[i]
            p[2 * i] = Float(cos(chi)); p[2 * i + 1] = Float(sin(chi))
        }
        propagators[thickness] = p
        return p
    }

    /// Passes `wave` through one slice of potential `v` (V·Å) and `thickness` Å of free space.
    public func transmitAndPropagate(_ wave: inout [Float], potential v: [Float], thickness: Double) {
        let sigma = Float(Beam.interaction(volts: volts))
        for i in 0..<(n * n) {
            let phase = sigma * v[i]
            let c = cos(phase), s = sin(phase), re = wave[2 * i], im = wave[2 * i + 1]
            wave[2 * i] = re * c - im * s; wave[2 * i + 1] = re * s + im * c
        }
        var k = fft.forward(complex: wave)
        let prop = propagator(thickness)
        for i in 0..<(n * n) {
            let c = prop[2 * i], s = prop[2 * i + 1], re = k[2 * i], im = k[2 * i + 1]
            k[2 * i] = re * c - im * s; k[2 * i + 1] = re * s + im * c
        }
        wave = fft.inverseNormalised(k)
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
