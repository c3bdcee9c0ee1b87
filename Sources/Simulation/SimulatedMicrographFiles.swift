import Foundation
import MicrographIO

extension SimulatedMicrograph {
    /// Writes one micrograph's files, together (`writeTogether`: an image is never left beside
    /// another run's mask); returns its manifest line.
    public func write(name: String, into dir: URL) throws -> String {
        let m = self
        let p = m.parameters
        let counts = m.counts.withUnsafeBytes { Array($0) }
        let labelBytes = m.labels.withUnsafeBytes { Array($0) }
        try writeTogether([
            (dir.appendingPathComponent("\(name).mrc"), {
                try MRCWriter.write(Micrograph(width: p.size, height: p.size, pixelType: .int16, data: counts,
                                               pixelSize: PixelSize(isotropic: p.pixelSizeNm), format: "mrc"), to: $0)
            }),
            (dir.appendingPathComponent("\(name)_mask.png"), { try PNGWriter.writeGrey8(m.mask, width: p.size, height: p.size, to: $0) }),
            (dir.appendingPathComponent("\(name)_labels.png"), {
                try PNGWriter.write(Micrograph(width: p.size, height: p.size, pixelType: .uint16, data: labelBytes, format: "png"), to: $0)
            }),
        ])
        var entry: [String: Any] = [
            "name": name, "material": p.material.rawValue, "files": ["\(name).mrc", "\(name)_mask.png", "\(name)_labels.png"],
            "width": p.size, "height": p.size, "dtype": "int16", "pixel_size_nm": p.pixelSizeNm, "voltage_kv": p.voltageKV,
            "defocus_nm": p.defocusNm, "defocus_convention": "positive = underfocus (C1 = -defocus)", "cs_um": p.csUm,
            "focal_spread_nm": p.focalSpreadNm, "semiangle_mrad": p.semiangleMrad, "astigmatism_nm": p.astigmatismNm,
            "objective_aperture_mrad": p.apertureMrad, "dose_e_per_A2": p.doseEPerA2, "camera_gain_adu_per_e": p.cameraGain,
            "camera_offset_adu": p.cameraOffset, "read_noise_adu": p.readNoise, "carbon_thickness_nm": p.carbonThicknessNm,
            "slice_thickness_A": Simulator.sliceThickness, "potential_sampling_A": p.pixelSizeNm * 10 / Double(p.oversampling ?? 1),
            "oversampling": p.oversampling ?? 1, "shapes": (p.shapes ?? [.sphere]).map(\.rawValue),
            "touching_fraction": p.touchingFraction, "seed": p.seed,
            "n_particles": m.particles.count, "particle_fraction": Double(m.mask.filter { $0 != 0 }.count) / Double(m.mask.count),
            "saturated_px": m.saturatedPixels,
            "defocus_reference": "the exit face of the specimen (below the carbon film): a particle on the film sees defocus minus the film's thickness minus half its own height",
            "timing_s": m.timings,
            "simulator": "nanofind simulate (multislice, Lobato & Van Dyck 2014 scattering factors)",
        ]
        let particles = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m.particles))
        entry["particles"] = particles
        return String(decoding: try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]), as: UTF8.self)
    }
}
