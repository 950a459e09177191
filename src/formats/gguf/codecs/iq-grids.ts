/**
 * The codebooks of llama.cpp's IQ types, as ggml-common.h defines them (iq2xxs_grid, iq2xs_grid,
 * iq2s_grid, iq3xxs_grid, iq3s_grid, iq1s_grid; ggml is MIT-licensed, © the ggml authors): data
 * of the formats, without which no IQ block can be decoded. Entry i of a grid is 8 (or 4) small
 * values, the bytes of C's uint64_t (uint32_t) in memory order; every byte of a grid comes from a
 * short alphabet, so each is stored as its index into that alphabet, 2 or 3 bits, packed
 * little-endian and base64-encoded. The tests check every table's unpacked bytes against a
 * checksum of ggml's and a few entries as ggml spells them.
 */

interface PackedGrid {
  entries: number;
  /** Values per entry. */
  width: number;
  /** The byte values; each stored value is an index into this list. */
  alphabet: readonly number[];
  bits: 2 | 3;
  packed: string;
}

const GRIDS = {
  IQ2XXS: { entries: 256, width: 8, alphabet: [8, 25, 43], bits: 2, packed:
  'AAACAAUACAAKABEAFAAgACIAKAAqAEEARABQAFgAYQBkAIAAggCKAKIAAQEEARABFQFAAYQBmAEAAgICIgKCAgEEBAQQBCEE' +
  'JARABEIESARgBIEEhASQBKQEAAUCBQgFIAVGBWkFgAWRBQkGEAZABoQGpAYACAUICAgUCCgIQQhECFAIUgiICAQJQAkCChQK' +
  'ARAEEBAQIRBAEGAQhBCQEJUQABEIESARUBFaEYARJBJFEgAUCBQgFCUUSRSAFBgVYhUAFhYWARgEGBAYQBiBGAAZBRmgGVEa' +
  'ACACIAogRCBhIIAggiApIUghACICIgEkBCQQJEAkViQAJUElZCWQJggoICiUKEQqAUAEQBBAGEAhQCRAQEBIQFZAYECBQIRA' +
  'kEAAQSBBYUGAQYVBAUIQQkhCVkJoQgBECEQgRIBEmUQSRSRFAEYBSARIEEhASEVIAElYSWFJgklFSpBKAFAIUBFQGVAgUIBQ' +
  'iFAEUUJRpFGRUpBUklQKVQFWVFYAWBFYGVhkWEBZCFoEYBBgQGBoYABhVWEYYmBiAGQFZBBlEmWEZUJoAIACgAqAQYCCgASB' +
  'GIFAgRGCAYQEhBCEFYRAhGCEAIVGhZSFCYZAhmCGAogEiRGKBJAQkCSQQJChkBaRgJFFkgCUIpRElFGVgZggmQKgUKCFoAmh' +
  'AKIYpFCoBKk=' },
  IQ2XS: { entries: 512, width: 8, alphabet: [8, 25, 43], bits: 2, packed:
  'AAACAAUACAAKABEAFAAWABkAIAAiACUAKABBAEQARgBJAFAAUgBVAFgAYQBkAIAAggCFAIgAkQCUAJkAoAABAQQBBgEJARAB' +
  'EgEVARgBGgEhASQBQAFCAUUBSAFRAVQBYAFoAYEBhAGQAQACAgIFAggCEQIUAiACQQJEAlACVQKAAooCAQQEBAYECQQQBBIE' +
  'FQQYBCEEJARABEIERQRIBFEEVARWBGAEgQSEBJAEAAUCBQUFCAURBRQFIAVBBUQFUAVhBYAFAQYEBhAGJgZABkIGhAYACAII' +
  'BQgICAoIEQgUCCAIJQhBCEQIUAhYCIAIoAiqCAEJBAkQCUAJgQmJCQAKIAooCpYKoAoBEAQQBhAJEBAQEhAVEBgQIRAkEEAQ' +
  'QhBFEEgQURBUEGAQahCBEIQQkBAAEQIRBREIERERFBEgEUERRBFQEYARlBGWEQESBBIGEhASQBJgEgAUAhQFFAgUERQUFCAU' +
  'QRREFEkUUBRkFIAUARUEFRAVQBUAFhQWSRYBGAQYEBgSGEAYVBiGGAAZBRlmGVEaqRoAIAIgBSAIIAogESAUICAgQSBEIFAg' +
  'gCCgIAEhBCEQIUAhSCFlIQAiIiKAIqgiASQEJBAkKSRAJAAlQSVSJZklASYaJqYmACgIKAooIChVKIgooihoKZApCCogKoIq' +
  'iCqKKgFABEAGQAlAEEASQBVAGEAhQCRAQEBCQEVASEBKQFFAVEBgQGVAgUCEQJBAAEECQQVBCEERQRRBIEFBQURBUEGAQYVB' +
  'okEBQgRCEEISQilCQEIARAJEBUQIRBFEFEQZRCBEQURERFBEgESURAFFBEUQRSRFQEWaRQBGCkZERlBGAUgESBBIQEhFSFRI' +
  'YkgASRFJRElQSWlJBEoAUAJQBVAIUBFQFFAgUChQQVBEUFBQgFABUQRREFEVUUBRQlEAUkRSqlIBVARUEFQhVEBUYFSBVKFU' +
  'AFUIVYBViFUhVmhWoVYAWBRYQVhQWJlYGllAWUJZhVoBYARgEGBAYFRgYmCGYKlgAGEkYkpikmIAZBZkEGVAZUVlpGUBaGpo' +
  'JWkGalRqYmoAgAKABYAIgBGAFIAggCqAQYBEgFCAgICCgKiAqoABgQSBBoEQgUCBUYFZgQCCIIKAgoKCoIKoggGEBIQQhBKE' +
  'FYRAhGCEiYQAhUSFpYUYhmqGAIgIiCWIWoiAiIKIqIgGiSKKgIqIipaKqIoBkASQEJBAkFaQhJAAkSKRZJFWkomSAJQFlESU' +
  'UJRYlCmVkJWSlUGWUZimmEmZFZpgmgCgAqAIoAqgIKAqoKCgUaFZoaahAKICogiiKqKAoqCiQKSVpGWmmKYKqCCoIqgoqKCo' +
  'qKgEqYSphqkoqiqqkaqqqg==' },
  IQ2S: { entries: 1024, width: 8, alphabet: [8, 25, 43], bits: 2, packed:
  'AAACAAUACAAKABEAFAAWABkAIAAiACUAKABBAEQARgBJAFAAUgBVAFgAYQBkAGYAaQCAAIIAhQCIAJEAlACgAKUAqgABAQQB' +
  'BgEJARABEgEVARgBIQEkAUABQgFFAUgBUQFUAVYBWQFgAWUBaAGBAYQBkAGSAZUBoQGkAQACAgIFAggCEQIUAiACKgJBAkQC' +
  'RgJJAlACVQKAAoUCigKUAqICAQQEBAYECQQQBBIEFQQYBCEEJAQmBCkEQARCBEUESARKBFEEVARWBFkEYARiBGUEgQSEBIYE' +
  'iQSQBJUEmAShBKQEAAUCBQUFCAUKBREFFAUWBRkFIAUlBSgFQQVEBUYFSQVQBVIFVQVYBWEFZAWABYIFhQWIBZEFlAWgBQEG' +
  'BAYGBgkGEAYVBkAGRQZIBlEGVAZgBoEGhAaQBgAIAggFCAgIEQgUCBYIGQggCCUIKghBCEQIRghJCFAIUghVCFgIYQhkCIAI' +
  'hQiUCKoIAQkECRAJEgkVCRgJIQlACUUJSAlRCVQJYAmBCZAJAAoRChQKIgooCioKUAqZCgEQBBAGEAkQEBASEBUQGBAhECQQ' +
  'JhBAEEIQRRBIEFEQVBBWEFkQYBBiEGUQaBCBEIQQhhCQEJUQmBChEKQQABECEQURCBEKERERFBEWERkRIBEiESURKBFBEUQR' +
  'RhFJEVARUhFVEVgRYRFkEYARghGFEYgRkRGUEQESBBIJEhASFRIhEiQSQBJFElESVBKBEoQSkBIAFAIUBRQIFBEUFBQWFBkU' +
  'IBQlFCgUQRREFEYUSRRQFFIUVRRYFGEUZBSAFIIUhRSIFJEUlBSgFAEVBBUGFQkVEBUSFRUVGBUhFSQVQBVCFUUVSBVRFVQV' +
  'YBWBFYQVkBUAFgUWCBYRFhQWIBZBFkQWUBaAFqoWARgEGAYYCRgQGBUYGBghGEAYQhhFGEgYURhUGGAYgRiEGAAZAhkFGQgZ' +
  'ERkUGSAZQRlEGVAZaRmiGQQaEBpAGlYaACACIAUgCCARIBQgFiAZICAgJSAqIEEgRCBQIFIgVSBkIIAgiiCUIKogASEEIRAh' +
  'EiEVISEhQCFCIUUhUSFUIWAhgSGEIZAhACIKIiIiKCIqIkQiUCKIIooiqCIBJAQkBiQJJBAkFSQYJCEkJCRAJEIkRSRIJFEk' +
  'VCRgJIEkhCSQJAAlBSUIJRElFCUgJUElRCVQJWYlgCUBJgQmECZAJlkmACgFKBEoFChBKEQoUCiKKKooASkEKRAplSkKKiIq' +
  'ZCqIKooqAUAEQAZACUAQQBJAFUAYQBpAIUAkQCZAQEBCQEVASEBKQFFAVEBWQFlAYEBiQGVAgUCEQJBAlUCYQKFApEAAQQJB' +
  'BUEIQRFBFEEWQRlBIEEiQSVBQUFEQUZBSUFQQVJBVUFYQWFBZEGAQYJBhUGIQZFBlEGgQQFCBEIQQhJCFUIYQiRCQEJFQkhC' +
  'UUJUQmBCgUKEQgBEAkQFRAhECkQRRBREFkQZRCBEIkQlRChEQUREREZESURQRFJEVURYRGFEZESARIJEhUSIRJFElESgRAFF' +
  'BEUGRQlFEEUSRRVFGEUhRSRFQEVCRUVFSEVRRVRFYEVqRYFFhEWQRQBGAkYFRghGEUYURiBGQUZERlBGgEalRgFIBEgJSBBI' +
  'EkgVSBhIIUgkSEBIQkhFSEhIUUhUSGBIhEiQSABJAkkFSQhJEUkUSSBJQUlESVBJgEmWSQFKBEoQSkBKAFACUAVQCFARUBRQ' +
  'FlAZUCBQIlAlUChQQVBEUEZQSVBQUFJQVVBYUGFQZFCAUIJQhVCIUJFQlFABUQRRBlEJURBRElEVURhRIVEkUUBRQlFFUUhR' +
  'UVFUUWBRgVGEUZBRAFIFUghSEVIUUiBSQVJEUlBSaVKAUgFUBFQGVAlUEFQSVBVUGFQhVCRUQFRCVEVUSFRRVFRUYFSBVIRU' +
  'kFQAVQJVBVUIVRFVFFUgVUFVRFVQVYBVAVYEVhBWJlZAVgBYAlgFWAhYEVgUWCBYQVhEWFBYWliAWAFZBFkQWUBZAFoZWoVa' +
  'qFoBYARgBmAQYBJgFWAYYCFgJGBAYEVgSGBRYFRgYGCEYJBgAGECYQVhCGERYRRhIGFBYURhUGGAYZlhBGIQYkBiVmKhYgBk' +
  'BWQIZBFkFGQgZEFkRGRQZIBkAWUEZRBlQGVKZWhlkmUAZpRmAWgEaBBoZWiYaABpKmlCaqFqAIACgAWACIARgBSAGYAggCWA' +
  'QYBEgFCAUoBVgFiAYYCAgIWAkYCUgAGBBIEJgRCBEoEVgRiBIYEkgUCBQoFFgUiBUYFUgYGBhIGQgamBAIIFggqCEYIUgkGC' +
  'RIJQggGEBIQGhAmEEIQShBWEGIQhhECEQoRFhEiEUYRUhGCEgYSEhJCEAIUChQWFCIURhRSFIIVBhUSFUIWAhYqFAYYEhhCG' +
  'KYZAhgCIBYgRiBSIQYhEiFCIoogBiQSJQIlliSKKWIpaioKKoooBkASQCZAQkBKQFZAYkCSQQJBCkEWQSJBRkFSQYJCBkISQ' +
  'kJAAkQWREZEUkUGRRJFQkVqRAZIEkhCSQJKmkgCUApQFlAiUEZQUlCCUQZRElFCUgJSWlAGVBJUQlUCVmJWhlQCWRpZklgGY' +
  'BJgQmCaYQJipmACZSZlSmZCaAKAFoAqgFKAioCqgQaBEoFCgoqCqoEChZaECogqiIqIooiqigqKIooqiqKIBpASkEKRApImk' +
  'pKQApRmlUaYKqCiooqhUqYapCKoKqiCqIqooqoiqqqo=' },
  IQ3XXS: { entries: 256, width: 4, alphabet: [4, 12, 20, 28, 36, 44, 52, 62], bits: 3, packed:
  'ACAABJAAC/AAECABGSACO9ADQTAESKAEUVAFWKAFYcAGeAAIgkAIiQAJkpAJm/AJqfAKvRAMx4AMylAN+LAQH0ESL7ETPREU' +
  'R6EVatEZtIEczOEc4xEfATIgCKIgETIhGKIhHHIiKAIkQpIkUCIlgTIoiKIokYIpugIswgIt2WIu9hIwBYMyUEM1ZpM3hSM9' +
  '4ANAApRACwRBEmRBGSRCQTRERYREShRFWDRHd4RHgCRIifRIkCRJnwRKrRRMyMRM+MRPHbVSQ3VVYcVXwTVczlVeAYZgChZh' +
  'E4ZiNaZjQCZkUJZlZGZmgTZoiFZpqqZrybZtGHdyOgd0Rid1bcd4njd72wd/BPiAHfiBK/iCfAiJnwiKsGiLx1iOBJmSNFmV' +
  'Y4mXxYmcyomdChqiOAqkRmqlbcqomqqrwrquCDuxF6uzQpu1qEu94kvBJGzCNBzFcfzItIzN3kzSRa3Wmz3c0T3gBX7gCK7h' +
  'Km7lYK7opa7qwN7s2w7vER/yQC/0VI/5' },
  IQ3S: { entries: 512, width: 4, alphabet: [1, 3, 5, 7, 9, 11, 13, 15], bits: 3, packed:
  'ABAAAlAAB4AACaAADOAAEBABFbABICACJXACKbACMCADOcADPwAEQSAERIAESdAEUDAFV5AFXUAGcVAHegAIgVAIh4AIi+AI' +
  'kVAJmMAJolAKp5AKq4ALuzAMydAM0CAN2bAN3kAO6KAO95AP/QAQC/EQEUERGgESI5ESOCEURAEVUmEVWxEWZXEWdrEXhpEY' +
  'i5EZqpEbwCEcxAEd0mEd24Ee7AEgASIgBIIgCbIgDfIgECIhGcIhHsIiLhIjOgIkQTIkRoIkTBIlWLIlYYImaoInfgIoitIo' +
  'jwIplKIpoDIqrQIruhIsxHIsyLIs0XIt2MIt4SIv+DIwBaMwDJMxGyMyJoMyLBM0SLM0UYM1WpM2kEM5l0M6phM8w4M8yhM9' +
  '3RM+8oM/ABRAA1RAB4RACsRADhRBE3RBGKRBITRCJYRCKnRDOLRDPQREQoRES/REUlRFWcRFYpRGgURIhxRJk4RJnxRKq/RK' +
  'ucRLwCRMxZRM0kRN2bRN4oRO9hRQBwVRE6VRHRVSOtVTRJVUUvVVYLVWeAVYgnVYkdVasVVcyWVd2DVe6CVgCbZgDfZgEpZh' +
  'G9ZhIkZiJ5ZiM5ZjQTZkRcZkUTZlYAZneuZngKZokKZpnIZqwYZszBZt03Zt2BZu43Zu7bZvA5dwDidxGadyMEdzQYd0Sld1' +
  'Wkd2brd3jhd6wTd80Cd93QeABKiAEEiBF6iBIYiCOCiER5iESyiFWNiFY5iGbRiIg4iIjRiJmwiKryiLuEiMybiM0CiN2diN' +
  'ACmQFPmRIJmTRXmUUSmXi8mZsImczYmd45meAoqgDCqhIEqiJ6qiNsqjQTqkRaqkUaqlegqoiTqpmOqpqyqsx4qs10qu6Vqv' +
  '+xqwBAuxGmuySmu1abu2oiu8xCu9CbzADZzBGwzDQAzFV0zHiszJotzKsozLwMzM0QzOFT3SMg3UQ83VcF3YoJ3cyw3gBH7g' +
  'EC7hHg7iLC7jQp7kVD7mZR7ohI7ojh7pmJ7qwq7t3b7uAV/wCw/xKC/1Yi/4mQ/8' },
  IQ1S: { entries: 2048, width: 8, alphabet: [255, 0, 1], bits: 2, packed:
  'AAACAAUACAAKABEAFQAgACIAKAAqAEUAUQBUAFYAZQCAAIIAiACKAJUAoACiAKgAqgAEAQUBEQEUARYBGQEaASUBQQFGAUkB' +
  'UgFVAVoBYQFkAWYBaAGFAZEBlAGWAaUBAAICAggCCgIVAiACIgIoAioCRQJRAlkCZAJpAoACggKIAooCkQKVApkCoAKiAqgC' +
  'qgIRBBQEFgQlBEEESQRVBFoEZARlBJEEmQSlBAEFBAUFBQYFFQUYBRoFKQVABUUFSgVQBVEFVAVVBVYFWQVgBWIFZQVoBWoF' +
  'gQWRBZUFmAWaBaEFpAWlBaYFqQUUBhkGQQZEBlAGUgZVBlgGYAZhBmYGaQaFBpEGlAaZBgAIAggICAoIFQggCCIIKAgqCEUI' +
  'UQhWCGUIgAiCCIgIigiVCKAIogioCKoIBQkRCRQJGQkkCSUJQQlQCVEJVQlhCWQJaQmRCZQJlgmZCaUJAAoCCggKCgoVCiAK' +
  'IgooCioKRQpRClkKYQplCoAKggqFCogKigqVCqAKogqoCqoKEBAREBQQGRAkECUQQRBEEFAQVRBYEGEQZBBlEGkQkRCUEJYQ' +
  'oRClEAERBBEGEQkREBESERURGBEhESQRKRFFEUoRUBFREVIRVBFVEVYRWRFgEWURhBGSEZURoRGkERESFBIWEiUSQBJGEkkS' +
  'UhJVElgSWhJkEmYShRKREpQSlhKlEgEUBhQJFBQUFRQYFBkUIRQmFEEURRRGFEgUShRRFFQUVRRWFFkUYhRlFGgUhBSJFJAU' +
  'lBSVFJgUmRSaFKEUpBSlFKkUAhUFFQoVERUUFRUVFhUZFSAVIhUlFSgVKhVBFUQVRRVGFVEVUhVUFVUVVhVZFVoVYRVkFWUV' +
  'ZhVpFYAVghWEFYUViBWKFZAVkRWUFZUVlhWZFZoVoBWiFaUVARYEFgUWBhYVFhYWGBYaFiEWJhZAFkIWRBZFFkgWShZRFlUW' +
  'VhZYFlkWYRZkFmUWaBZpFmoWhhaKFpIWlRakFqkWERgWGCUYQRhEGEYYSRhQGFUYWBhaGGAYYRhkGGYYaRiFGJEYlBilGBAZ' +
  'EhkVGRoZIRklGUIZRBlFGUgZURlUGVUZVhlZGVoZYBllGWoZiRmRGZIZlRmYGaEZphmpGQkaFhokGiYaRBpGGkkaUBpSGlUa' +
  'WBphGmYaaRqFGpEalhqaGgAgAiAIIAogFSAgICIgJSAoICogRSBRIFkgYSBlIIAggiCIIIoglSCgIKIgpSCoIKogBSERIRQh' +
  'GSElIUIhRCFJIVUhWCFaIWEhZCFlIWYhhSGQIZYhmSGlIQEiCCIKIhEiFSIgIiIiKCIqIkUiUSJWIlkiZSKBIogiiiKRIpUi' +
  'oCKiIqgiqiIFJBQkFiQZJCUkRCRFJEYkSSRSJFUkWCRaJGYkhSSRJJQkmSShJKUkCSUVJSElKSVAJUUlSCVRJVQlVSVZJWIl' +
  'ZSVoJYklkCWUJZUlmCWaJaElpCWmJaklBSYQJhImGSYlJkEmSSZVJmAmYSZpJoQmhiaQJpomACgCKAgoCigVKCAoIigoKCoo' +
  'RShRKFQoZSiAKIIoiCiKKKAooiioKKooCSkRKRQpGSklKUYpSSlSKVUpYSlkKWYpaSmFKZAplimZKaQppSkAKgIqCCoKKiAq' +
  'IiooKioqRSpRKlYqWSplKoAqgiqIKooqlSqgKqIqqCqqKgVAEUAWQCVASUBSQFVAWEBaQGFAZEBmQJRAmUChQKZAAEEBQQRB' +
  'BkEJQRJBFUEWQRhBGkEhQSZBKUFFQUhBSkFRQVRBVUFWQVlBWkFlQWhBakGBQYRBhkGQQZJBlUGgQaFBokEFQhFCFEIWQiVC' +
  'QUJSQlVCWkJkQmlCiUKUQqVCAUQVRBlEKURFREhESkRRRFREVURWRGFEYkRlRGhEakSBRIZEiUSQRJJElUSgRKFEqUQBRQJF' +
  'BUUKRRFFFEUVRRZFGUUgRSVFKkVBRURFRUVGRUlFUEVRRVRFVUVWRVhFWUVhRWRFZUVmRWlFgkWERYVFiEWRRZRFlUWWRZlF' +
  'mkWlRahFqkUBRgVGCUYURhVGGEYaRiFGJEYpRkBGQkZFRkhGUEZRRlJGVUZWRllGYkZlRmhGgUaFRopGlEaVRqFGpEamRgVI' +
  'EUgVSBpIJUhCSElIUEhVSFhIYUhkSGZIaUiFSJFIlEiWSJlIpUgBSQVJBkkKSRBJFEkVSRhJIUkkSSZJQElFSUpJUUlSSVRJ' +
  'VUlWSVlJYEliSWVJZklqSYZJiUmSSZVJlkmYSaFJpEmmSalJFkpESkZKSUpVSlhKWkpkSmlKlEqlSgFQBFAFUAZQCVASUBVQ' +
  'GlAhUCRQKVBAUEVQSFBRUFRQVVBWUFlQZVBoUIZQiVCVUJhQoFChUKZQqVAFUQhRCVEKURFRFFEVURZRGFEZUSBRJVEmUShR' +
  'KlFBUURRRVFGUUlRUFFRUVJRVFFVUVZRWFFZUVpRYVFkUWVRZlFpUYJRhVGRUZRRlVGWUZlRoFGlUapRAVIGUhJSFVIaUiFS' +
  'JFJCUkVSSlJRUlRSVVJWUllSYlJlUoVSkFKSUpVSmVKaUqRSBFQFVBFUFFQVVBZUGFQZVCFUJVQoVCpUQVREVEVURlRJVEpU' +
  'UFRRVFRUVVRWVFhUWVRaVGFUYlRkVGVUZlRpVIBUiFSKVJFUlFSVVJZUmVShVKRUpVSqVAFVAlUEVQVVBlUJVRBVEVUSVRRV' +
  'FVUWVRlVGlUhVSRVJVUmVSlVQFVBVUJVRFVFVUZVSFVJVVBVUVVSVVRVVVVWVVhVWVVaVWBVYVVkVWVVZlVoVWlValWBVYRV' +
  'hVWJVYpVkFWRVZRVlVWWVZhVmVWhVaRVpVWmValVAFYBVgJWBFYGVghWCVYRVhRWFVYYVhlWIFYhViJWJFYlViZWKFYpVkFW' +
  'RVZGVkhWSVZKVlBWUVZSVlRWVVZWVlhWWVZaVmFWZFZlVmlWglaFVoZWiFaJVopWkVaVVppWolalVqZWqFapVgRYBVgGWAlY' +
  'EFgVWBhYIVgqWEVYSFhKWFFYVFhVWFZYWFhZWGBYYlhkWGVYgliJWJBYkliVWJhYoVipWAFZAlkFWQpZEVkUWRVZFlkZWSVZ' +
  'QVlEWUVZRllJWVBZUVlSWVRZVVlWWVhZWVlaWWFZZFllWWZZaVmBWYVZiVmRWZRZlVmWWZhZmVmlWQRaCFoVWhpaIFolWiZa' +
  'KVpFWkhaSVpRWlVaVlpYWllaYlplWmhaalqBWopaklqVWpZamFqaWqFaBWAUYBZgGWAlYERgUGBVYFZgWGBaYGFgZGBmYGlg' +
  'gWCWYKVgAWEEYQZhCWESYRVhIWEiYSZhKWFFYUlhUWFVYVZhWWFlYWZhamGEYYphkmGVYaFhpmGpYRFiFmIZYkBiQWJGYlVi' +
  'VmJYYmBihWKRYpZipWIRZBJkFWQWZBpkIWQmZClkQGRCZEVkSGRKZFFkVGRVZFZkWWRaZGBkYmRlZIRkhWSJZJBkkmSUZJVk' +
  'lmSYZJpkoWSkZKlkBWUIZQplEWUVZRZlGWVEZUVlRmVJZVBlUWVUZVVlVmVZZWFlZGVlZWZlaWWGZYllimWRZZVllmWZZZpl' +
  'omWlZaZlqGUCZglmFWYgZiZmKGYpZkBmRWZIZkpmUWZUZlVmVmZYZlpmYGZlZmhmgGaCZoVmimaUZpZmmGaZZqBmpGamZqpm' +
  'FmgZaCVoQWhSaFVoWmhhaGlohWiRaJhopmgBaQRpEGkVaSFpJGkmaSlpQGlBaUVpRmlIaVFpVGlVaVZpWWlgaWVpammCaYRp' +
  'immVaaFppGmlaalpEWoWahhqQWpEaklqUGpValhqWmpkamVqaWqGapRqmGqaaqZqAIACgAiACoAggCKAKIAqgEWAUIBRgFSA' +
  'VoBZgGWAgICCgIiAioCVgKCAooCogKqABYERgRSBFoEZgSWBQYFEgUmBUIFSgVWBVoFYgVmBZIFmgWmBhYGJgZSBloGZgaWB' +
  'AIICggiCCoIVgiCCIoIogiqCUYJUglmCZYKAgoKCiIKKgpWCoIKigqiCqoIUhBmEQYREhFGEVYRahGGEZIRphJSEmYQBhQmF' +
  'EoUVhRqFJoUphUCFQYVFhUiFUYVUhVWFVoVZhVqFZYVmhWiFaoWBhYSFhoWJhZCFkoWVhZiFpoURhhaGGYYlhkGGRIZJhkqG' +
  'UIZVhlmGWoZhhmaGaoaFhpGGmoakhgCIAogIiAqIFYggiCKIKIgqiEGIRYhRiFSIWYhliGmIgIiCiIiIioiViKCIooioiKqI' +
  'BYkGiRGJFIkWiSWJQYlEiUaJSYlQiVKJVYlaiWGJZImFiZaJmYmliQCKAooIigqKFYogiiKKKIoqikWKUYpUilaKgIqCioiK' +
  'ioqViqCKooqoiqqKBZARkBaQGJAZkCWQQZBGkEmQVZBYkFqQaZBqkIWQkZCUkJaQmZClkAGRBJEGkQmREJEVkRiRGpEhkSSR' +
  'JpEpkUCRRZFQkVGRVJFVkVaRWZFikWWRhJGGkZKRlZGYkaGRpJGmkamRBZIRkhSSGZIlkkSSRpJJklCSUpJVkliSZpJpkoWS' +
  'lJKWkqmSAZQElAaUEJQVlBiUJpRAlEqUUZRUlFWUVpRYlFmUYJRhlGKUZZSElIaUkpSUlJWUmJShlKmUAJUFlQiVCpUQlRGV' +
  'FJUVlRaVGZUhlSWVKZUqlUGVRJVFlUaVSZVQlVGVUpVUlVWVVpVYlVmVWpVhlWSVZZVmlWmVgZWFlYiVkZWSlZSVlZWWlZmV' +
  'mpWglaKVpZWolaqVAZYElhCWFZYZliCWJpYplkWWSJZJllGWUpZVllaWWZZllmiWgpaElomWipaSlpSWlZaklqaWqZYFmBaY' +
  'GZglmEGYRphQmFKYVZhWmFqYZJhlmIWYkZiWmJmYpZgEmQaZCZkQmRKZFZkYmRqZIJkhmSSZJplAmUKZRZlImUqZUZlUmVWZ' +
  'VplZmWKZZZlmmWqZgZmEmZCZkpmVmZqZoZmmmQWaFZolmkSaRppJmlCaVZpYmmGahZqRmpSalZqWmgCgAqAIoAqgFaAgoCKg' +
  'KKAqoEWgUaBUoFagWaCAoIKgiKCKoJWgoKCioKigqqAFoQmhEaEUoRahGaEaoUahSaFRoVWhWKFaoWGhZKGFoZChkqGWoZmh' +
  'AqIIogqiEKIZoiKiKKIqokWiUaJWolmiZaKAooKiiKKKopWioKKioqiiqqIZpCWkQaREpFCkVKRVpFikWqRhpGWkZqRopGmk' +
  'haQGpQmlEKUSpRWlGKUmpSmlQqVFpVGlVKVVpValWaVlpWqlgaWEpYWlhqWJpZKllaWYpQWmEaYWphqmIaYlpkSmRqZKplKm' +
  'VaZWplimYKZipoamkKaVppammaahpqSmpqYAqAKoCKgKqCCoIqgoqCqoUahUqFaoWaiAqIKoiKiKqJWooKiiqKioqqgFqRSp' +
  'GakhqSWpQalQqVWpWqlhqWapaamQqZapAKoCqgiqCqogqiKqKKoqqlGqVKpWqoCqgqqIqoqqlaqgqqKqqKqqqg==' },
} satisfies Record<string, PackedGrid>;

export type IqGrid = keyof typeof GRIDS;

const unpacked = new Map<IqGrid, Uint8Array>();

/** Grid `name` as bytes: entry i's value j at i·width + j (iq1s values are int8: 255 is −1). */
export function iqGrid(name: IqGrid): Uint8Array {
  let bytes = unpacked.get(name);
  if (!bytes) {
    const g: PackedGrid = GRIDS[name];
    const text = atob(g.packed);
    bytes = new Uint8Array(g.entries * g.width);
    for (let i = 0; i < bytes.length; i++) {
      let code = 0;
      for (let k = 0; k < g.bits; k++) {
        const bit = i * g.bits + k;
        code |= ((text.charCodeAt(bit >> 3) >> (bit & 7)) & 1) << k;
      }
      bytes[i] = g.alphabet[code];
    }
    unpacked.set(name, bytes);
  }
  return bytes;
}

/**
 * Grid `name` as each value's index into its alphabet. For the IQ3 grids this is the level 0…7 that
 * ggml's quantizer (iq3xs_init_impl) stores as 2·level + 1 and searches.
 */
export function iqGridCodes(name: IqGrid): Uint8Array {
  const alphabet: readonly number[] = GRIDS[name].alphabet;
  return iqGrid(name).map((v) => alphabet.indexOf(v));
}

/**
 * ksigns_iq2xs: 7 sign bits of a group of 8, the eighth making the count of minus signs even (bit 7
 * is the parity of the other seven), as ggml's table lists them.
 */
export const KSIGNS = Uint8Array.from({ length: 128 }, (_, i) => {
  let parity = 0;
  for (let b = i; b; b >>= 1) parity ^= b & 1;
  return i | (parity << 7);
});

/** kvalues_iq4nl: the 16 non-linear levels of IQ4_NL and IQ4_XS. */
export const KVALUES_IQ4NL: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** kvalues_mxfp4: e2m1 values doubled (the scale is halved to match). */
export const KVALUES_MXFP4: readonly number[] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/** An IQ2 or IQ3 grid as ggml's quantizers search it (iq2xs_init_impl, iq3xs_init_impl). */
export interface IqSearchTables {
  /** Entry e's `width` levels at width·e … width·e + width − 1. */
  readonly levels: Uint8Array;
  /**
   * kmap_q2xs / kmap_q3xs: for `width` levels packed `bits` bits each (the first lowest), their
   * entry; off the grid, −(o + 1) where `neighbours[o]` counts the nearest entries listed after it.
   */
  readonly map: Int32Array;
  /** Per point off the grid: a count, then the entries at its `nwant` nearest distances (ascending, then by index). */
  readonly neighbours: Uint16Array;
}

/**
 * iq2xs_init_impl's and iq3xs_init_impl's tables for grid entries of `width` levels of `bits` bits
 * (IQ2: 8 of 2, map of 43 692; IQ3: 4 of 3, map of 4096): for every packed point not on the grid,
 * every entry at one of its `nwant` smallest distinct squared distances, in the order C's qsort on
 * (distance, index) leaves them; found by scanning for each distance in turn, which gives that
 * order without sorting. Built once per grid.
 */
export function iqSearchTables(levels: Uint8Array, width: number, bits: number, mapSize: number, nwant: number): IqSearchTables {
  const size = levels.length / width;
  const mask = (1 << bits) - 1;
  const map = new Int32Array(mapSize).fill(-1);
  for (let e = 0; e < size; e++) {
    let u = 0;
    for (let k = 0; k < width; k++) u |= levels[width * e + k] << (bits * k);
    map[u] = e;
  }
  const lists: number[] = [];
  const d2 = new Int32Array(size);
  // The squared distance of two points is the sum over their two halves (width/2 levels each):
  // a table of every pair of half-points, and each entry's halves, make it two look-ups.
  const halfBits = (width >> 1) * bits;
  const halfSize = 1 << halfBits;
  const halfMask = halfSize - 1;
  const pair = new Int32Array(halfSize * halfSize);
  for (let a = 0; a < halfSize; a++) {
    for (let b = 0; b < halfSize; b++) {
      let s = 0;
      for (let k = 0; k < width >> 1; k++) {
        const diff = 2 * (((a >> (bits * k)) & mask) - ((b >> (bits * k)) & mask));
        s += diff * diff;
      }
      pair[a * halfSize + b] = s;
    }
  }
  const lo = new Int32Array(size);
  const hi = new Int32Array(size);
  for (let e = 0; e < size; e++) {
    let u = 0;
    for (let k = 0; k < width; k++) u |= levels[width * e + k] << (bits * k);
    lo[e] = u & halfMask;
    hi[e] = u >> halfBits;
  }
  const nearest = new Int32Array(nwant);
  const found: number[] = [];
  for (let u = 0; u < mapSize; u++) {
    if (map[u] >= 0) continue;
    const rowLo = (u & halfMask) * halfSize;
    const rowHi = (u >> halfBits) * halfSize;
    // The nwant smallest distinct distances, ascending (have of them so far).
    let have = 0;
    for (let e = 0; e < size; e++) {
      const d = pair[rowLo + lo[e]] + pair[rowHi + hi[e]];
      d2[e] = d;
      if (have === nwant && d >= nearest[have - 1]) continue;
      let at = have;
      while (at > 0 && nearest[at - 1] > d) at--;
      if (at > 0 && nearest[at - 1] === d) continue;
      for (let j = Math.min(have, nwant - 1); j > at; j--) nearest[j] = nearest[j - 1];
      nearest[at] = d;
      if (have < nwant) have++;
    }
    const at = lists.length;
    map[u] = -(at + 1);
    lists.push(0);
    // Every entry within those distances, by distance, then index (C's qsort on (d², index)).
    found.length = 0;
    const last = nearest[have - 1];
    for (let e = 0; e < size; e++) if (d2[e] <= last) found.push(e);
    for (let k = 0; k < have; k++) for (const e of found) if (d2[e] === nearest[k]) lists.push(e);
    lists[at] = lists.length - at - 1;
  }
  return { levels, map, neighbours: Uint16Array.from(lists) };
}
